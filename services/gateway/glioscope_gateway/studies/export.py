"""De-identified export of a study: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile
with the Clean Descriptors Option; documents are left out.

Profile and options (also in the files: DeidentificationMethod, DeidentificationMethodCodeSequence):

- Basic Profile (DCM 113100). Orthanc applies Table E.1-1 of DICOM 2021b (`POST /studies/{id}/anonymize`):
  patient name and ID replaced, the other Table E.1-1 attributes emptied or removed at any depth,
  private tags dropped, every Study/Series/SOP Instance/Frame of Reference UID replaced — consistently
  within the study, so a SEG's ReferencedSeriesSequence and SourceImageSequence still point at the
  exported images.
- Clean Descriptors Option (DCM 113105): free text (every LT, ST and UT element at any depth) is removed,
  except values of a known form (a SEG segment's TrackingID "glioscope-label-<n>", written by Glioscope).
  StudyDescription is removed; SeriesDescription is replaced by the series' Glioscope role (T1, T1c, T2,
  FLAIR) or by "Segmentation" for a DICOM-SEG, and removed otherwise.
- Retain Longitudinal Temporal Information: no. Every DA, DT and TM element at any depth is emptied;
  InstanceCreationDate/Time, InstanceCoercionDateTime and ContributionDateTime are removed;
  LongitudinalTemporalInformationModified = REMOVED.
- Retain UIDs: no. On top of Orthanc's replacement, every UID that is not a DICOM-defined one (SOP
  classes, transfer syntaxes, coding schemes) is replaced again from a map made for this export alone:
  consistent across the exported files, and no UID of the export exists in the PACS.
- Retain Patient Characteristics, Device Identity, Institution Identity, Safe Private: no.
  Clean Pixel Data, Clean Recognizable Visual Features, Clean Structured Content: not applied; instead,
  what they would be needed for is left out:
  * only image objects of the classes in EXPORTED_SOP_CLASSES (MR, CT, PET images, DICOM-SEG) are
    exported. Encapsulated documents (the report PDF: its text carries the patient's name, ID, birth
    date, accession number and Study UID), structured reports (TID 1500 measurements, key object
    selections), presentation states, secondary captures (screenshots, key images with burnt-in text)
    and anything else are left out: their content cannot be de-identified reliably.
  * an image marked BurnedInAnnotation = YES is left out (MR is not expected to carry burnt-in text);
  * overlays (60xx) and curves (50xx) are removed.
- The other person names (PN) are emptied; the file meta information loses the AE titles.

Before the zip is returned, each cleaned file is checked (fail closed): if any text or UID element still
carries the source's patient ID, other patient IDs, birth date or accession number (as a token), the
patient's or a physician's full name (family and given name together), or any of the source's
Study/Series/SOP Instance UIDs, the export fails (500 `deidentification_failed`, naming the attribute,
never the value) and nothing is sent.

The anonymised copy Orthanc makes is downloaded (`GET /studies/{copy}/archive`) and deleted at once; the
watcher ignores such copies (Orthanc marks them with the `AnonymizedFrom` metadata). A copy that cannot be
deleted (three tries) fails the export (503, nothing sent), is logged at error level with its Orthanc ID and
counted in `glioscope_degraded_total{component="export_cleanup"}` (alert GlioscopeDegraded): it is never left
behind silently. File names in the zip
are `<nn>-<role or modality>/<nnnnn>.dcm`.
"""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.errors import GlioscopeError, NotFound, UpstreamUnavailable
from glioscope_common.metrics import count_degraded

logger = logging.getLogger("glioscope.gateway.export")

# The DICOM edition whose Table E.1-1 Orthanc applies (Orthanc >= 1.9.4 knows 2021b and later).
ANONYMIZE_REQUEST = {
    "DicomVersion": "2021b",
    "KeepPrivateTags": False,
    "Synchronous": True,
}

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# Images whose identity lives in attributes the profile handles (no documents, reports, screenshots).
EXPORTED_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET Image
    SEGMENTATION_STORAGE,  # Segmentation (the model's and the edited versions)
})
DEIDENTIFICATION_METHOD = ["DICOM PS3.15 E.1 Basic Profile (Orthanc, 2021b)", "Clean Descriptors Option",
                           "No dates retained", "Documents and reports removed"]
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"), ("113105", "Clean Descriptors Option"))
# Removed outright (type 3 timestamps of the instance's own history).
REMOVED_KEYWORDS = frozenset({"InstanceCreationDate", "InstanceCreationTime", "InstanceCoercionDateTime",
                              "ContributionDateTime", "StudyDescription", "OriginalAttributesSequence"})
# Free text kept when its whole value has a known, non-identifying form.
KNOWN_TEXT = {"TrackingID": re.compile(r"glioscope-label-\d{1,3}")}
# UI elements naming a class, syntax or scheme rather than an object: never replaced.
CLASS_UID_KEYWORDS = frozenset({"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID",
                                "ReferencedSOPClassUIDInFile", "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile",
                                "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
                                "TemplateExtensionCreatorUID", "ImplementationClassUID", "SOPClassesInStudy",
                                "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID"})
FILE_META_REMOVED = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
                     "SourcePresentationAddress", "SendingPresentationAddress", "ReceivingPresentationAddress",
                     "PrivateInformationCreatorUID", "PrivateInformation", "ImplementationVersionName")
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # pixel data (float, double float)
UID_LIKE = re.compile(r"[0-9]+(?:\.[0-9]+)+")


class DeidentificationFailed(GlioscopeError):
    """A source identifier survived de-identification: nothing is exported."""

    status_code = 500
    code = "deidentification_failed"


@dataclass
class SourceIdentity:
    """What must not appear in the export: the source's identifiers and UIDs (never logged)."""

    uids: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)  # IDs, accession number, birth date: matched as tokens
    phrases: set[str] = field(default_factory=set)  # full names: matched as whole words (normalised)

    def add_name(self, value: str) -> None:
        parts = [p.strip() for p in str(value).split("=")[0].split("^")]
        family, given = (parts + ["", ""])[:2]
        # Family and given name together: one word alone ("Brain", "Anonymous") is too common to refuse on.
        if family and given:
            self.phrases |= {_normalise(f"{family} {given}"), _normalise(f"{given} {family}")}
        middle = parts[2] if len(parts) > 2 else ""
        if family and given and middle:
            self.phrases.add(_normalise(f"{given} {middle} {family}"))

    def add_code(self, value: str) -> None:
        """An identifier of at least 4 characters with a digit (a word such as "BRAIN" is too common to refuse on)."""
        for item in str(value).split("\\"):
            item = item.strip().lower()
            if len(item) >= 4 and any(c.isdigit() for c in item):
                self.codes.add(item)

    def found_in(self, element: DataElement) -> bool:
        text = _text(element)
        if not text:
            return False
        if element.VR == "UI":  # compared whole: a random UID's digits may contain any code
            return any(v in self.uids for v in text.split("\\"))
        if self.uids.intersection(UID_LIKE.findall(text)):
            return True
        lowered = text.lower()
        tokens = set(re.split(r"[^0-9a-z.\-_/]+", lowered)) | set(re.split(r"[^0-9a-z]+", lowered))
        if element.keyword != "CodeValue" and (  # coded concepts (DCM 113076, ...) may equal a numeric ID
                self.codes & tokens or any(len(code) >= 8 and code in lowered for code in self.codes)):
            return True
        normalised = f" {_normalise(text)} "
        return any(f" {phrase} " in normalised for phrase in self.phrases)


def _normalise(text: str) -> str:
    return " ".join(re.split(r"[^0-9a-z]+", str(text).lower().replace("^", " "))).strip()


def _text(element: DataElement) -> str:
    value = element.value
    if value is None or element.VR == "SQ" or element.tag in BULK_TAGS:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1") if element.VR == "UN" else ""
    if element.VR not in TEXT_VRS:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def iter_elements(ds: Dataset) -> Iterator[DataElement]:
    """Every element at any depth of nested sequences."""
    for element in ds:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from iter_elements(item)


def source_identity(orthanc: OrthancRest, source: str) -> SourceIdentity:
    """The source study's identifiers, from Orthanc's main DICOM tags of the study, its series and instances."""
    identity = SourceIdentity()
    study = orthanc.study(source)
    tags = {**study.get("PatientMainDicomTags", {}), **study.get("MainDicomTags", {})}
    for keyword in ("PatientName", "ReferringPhysicianName", "RequestingPhysician", "PerformingPhysicianName"):
        if tags.get(keyword):
            identity.add_name(tags[keyword])
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate"):
        if tags.get(keyword):
            identity.add_code(tags[keyword])
    identity.uids.add(str(tags.get("StudyInstanceUID", "")))
    for series in orthanc._request("GET", f"/studies/{source}/series").json():
        identity.uids.add(str(series.get("MainDicomTags", {}).get("SeriesInstanceUID", "")))
    for instance in orthanc._request("GET", f"/studies/{source}/instances").json():
        identity.uids.add(str(instance.get("MainDicomTags", {}).get("SOPInstanceUID", "")))
    identity.uids.discard("")
    identity.phrases.discard("")
    return identity


def copy_series_roles(orthanc: OrthancRest, source: str, copy: str, roles: Mapping[str, str]) -> dict[str, str]:
    """SeriesInstanceUID in the anonymised copy -> the Glioscope role of its source series."""
    if not roles:
        return {}
    source_uids = {s["ID"]: s.get("MainDicomTags", {}).get("SeriesInstanceUID", "")
                   for s in orthanc._request("GET", f"/studies/{source}/series").json()}
    out = {}
    for series in orthanc._request("GET", f"/studies/{copy}/series").json():
        origin = orthanc._request("GET", f"/series/{series['ID']}/metadata/AnonymizedFrom").text.strip()
        role = roles.get(source_uids.get(origin, ""))
        if role:
            out[str(series.get("MainDicomTags", {}).get("SeriesInstanceUID", ""))] = role
    return out


class Deidentifier:
    """The gateway's pass over Orthanc's anonymised files (the options of the module docstring)."""

    def __init__(self, series_roles: Mapping[str, str], identity: SourceIdentity) -> None:
        self.series_roles = dict(series_roles)
        self.identity = identity
        self.uid_map: dict[str, str] = {}

    def new_uid(self, value: str) -> str:
        if value.startswith("1.2.840.10008."):  # DICOM-defined (well-known frames of reference, ...)
            return value
        if value not in self.uid_map:
            self.uid_map[value] = f"2.25.{uuid.uuid4().int}"
        return self.uid_map[value]

    def keep(self, ds: Dataset) -> bool:
        return str(ds.get("SOPClassUID", "")) in EXPORTED_SOP_CLASSES and str(ds.get("BurnedInAnnotation", "")).upper() != "YES"

    def clean(self, ds: Dataset, top: bool = False) -> None:
        for element in list(ds):
            tag = element.tag
            if tag.is_private or (0x5000 <= tag.group <= 0x50FF) or (0x6000 <= tag.group <= 0x60FF and tag.group % 2 == 0):
                del ds[tag]
            elif element.VR == "UN":  # an attribute unknown to pydicom's dictionary: its meaning cannot be judged
                del ds[tag]
            elif element.keyword in REMOVED_KEYWORDS:
                del ds[tag]
            elif element.VR == "SQ":
                for item in element.value:
                    self.clean(item)
            elif element.VR in ("DA", "DT", "TM"):
                if element.value:
                    element.value = ""
            elif element.VR == "PN":
                if element.value and not (top and element.keyword == "PatientName"):
                    element.value = ""
            elif element.VR in ("LT", "ST", "UT"):
                pattern = KNOWN_TEXT.get(element.keyword)
                if not (pattern and element.value and pattern.fullmatch(str(element.value))):
                    del ds[tag]
            elif element.VR == "UI" and element.value and element.keyword not in CLASS_UID_KEYWORDS:
                if element.VM > 1:
                    element.value = [self.new_uid(str(v)) for v in element.value]
                else:
                    element.value = self.new_uid(str(element.value))

    def deidentify(self, ds: Dataset) -> None:
        """Clean, check (fail closed), then stamp: the descriptions and the method, constants, are set after the check."""
        role = self.series_roles.get(str(ds.get("SeriesInstanceUID", "")))
        self.clean(ds, top=True)
        for keyword in ("SeriesDescription", "DeidentificationMethod", "DeidentificationMethodCodeSequence"):
            if keyword in ds:
                delattr(ds, keyword)
        meta = ds.file_meta
        for keyword in FILE_META_REMOVED:
            if keyword in meta:
                delattr(meta, keyword)
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        self.check(ds)
        if role:
            ds.SeriesDescription = role
        elif str(ds.SOPClassUID) == SEGMENTATION_STORAGE:
            ds.SeriesDescription = "Segmentation"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        codes = []
        for value, meaning in METHOD_CODES:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
            codes.append(code)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        ds.LongitudinalTemporalInformationModified = "REMOVED"

    def check(self, ds: Dataset) -> None:
        for element in (*iter_elements(ds.file_meta), *iter_elements(ds)):
            if self.identity.found_in(element):
                raise DeidentificationFailed(
                    f"a source identifier survived de-identification in {element.keyword or element.tag}; nothing was exported")


def _number(value: object) -> int:
    try:
        return int(str(value or 0))
    except (TypeError, ValueError):
        return 0


def deidentify_archive(archive: bytes, series_roles: Mapping[str, str], identity: SourceIdentity) -> tuple[bytes, Counter]:
    """Orthanc's zip of the anonymised copy -> the export's zip, and what was exported or left out (by SOP class).

    Two passes, one file in memory at a time: the headers name the files (one folder per series in series
    number order, files in instance number order; no identifier in a name), then each file is read,
    de-identified and written."""
    deidentifier = Deidentifier(series_roles, identity)
    counts: Counter = Counter()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        headers: dict[str, Dataset] = {}
        for name in source.namelist():
            if name.endswith("/"):
                continue
            try:
                with source.open(name) as handle:
                    header = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=[
                        "SOPClassUID", "BurnedInAnnotation", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber", "Modality"])
            except InvalidDicomError:
                counts["left out: not DICOM"] += 1
                continue
            if deidentifier.keep(header):
                headers[name] = header
            else:
                counts[f"left out: {header.get('SOPClassUID', 'unknown')}"] += 1
        series: dict[str, list[str]] = {}
        for name, header in headers.items():
            series.setdefault(str(header.get("SeriesInstanceUID", "")), []).append(name)
        paths: dict[str, str] = {}
        ordered = sorted(series.items(), key=lambda item: _number(headers[item[1][0]].get("SeriesNumber")))
        for index, (series_uid, names) in enumerate(ordered, start=1):
            first = headers[names[0]]
            label = series_roles.get(series_uid) or (
                "Segmentation" if str(first.SOPClassUID) == SEGMENTATION_STORAGE else str(first.get("Modality") or "series"))
            label = re.sub(r"[^A-Za-z0-9]", "", label) or "series"
            for n, name in enumerate(sorted(names, key=lambda nm: _number(headers[nm].get("InstanceNumber"))), start=1):
                paths[name] = f"{index:02d}-{label}/{n:05d}.dcm"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as target:
            for name, path in paths.items():
                ds = pydicom.dcmread(io.BytesIO(source.read(name)))
                deidentifier.deidentify(ds)
                buffer = io.BytesIO()
                pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
                target.writestr(path, buffer.getvalue())
                counts[f"exported: {ds.SOPClassUID}"] += 1
    return out.getvalue(), counts


def _delete_copy(orthanc: OrthancRest, copy: str, tries: int = 3) -> bool:
    """Delete the anonymised copy; False (logged at error level, counted) when it stays in the PACS."""
    for attempt in range(tries):
        try:
            orthanc.delete_study(copy)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure leaves the copy behind
            error = exc
            time.sleep(0.2 * (attempt + 1))
    count_degraded("export_cleanup")
    logger.error("could not delete a de-identified copy from the PACS (%s); delete it by hand",
                 type(error).__name__, extra={"orthanc_id": copy})
    return False


def export_deidentified(orthanc: OrthancRest, study_instance_uid: str, roles: Mapping[str, str] | None = None) -> bytes:
    """A zip of the study de-identified (module docstring); the anonymised copy is removed from the PACS.

    `roles`: source SeriesInstanceUID -> Glioscope role (T1, T1c, T2, FLAIR), the exported SeriesDescription."""
    source = orthanc.find_study(study_instance_uid)
    if source is None:
        raise NotFound("the study is not in the PACS")
    identity = source_identity(orthanc, source)
    response = orthanc._request("POST", f"/studies/{source}/anonymize", json=ANONYMIZE_REQUEST, timeout=600)
    copy = response.json().get("ID")
    if not copy:
        raise UpstreamUnavailable("the PACS did not return the de-identified copy")
    try:
        series_roles = copy_series_roles(orthanc, source, copy, roles or {})
        archive = orthanc._request("GET", f"/studies/{copy}/archive", timeout=600).content
    finally:
        deleted = _delete_copy(orthanc, copy)
    if not deleted:
        raise UpstreamUnavailable(
            f"the de-identified copy could not be removed from the PACS (Orthanc study {copy}); the export is "
            "refused until an administrator deletes it"
        )
    content, counts = deidentify_archive(archive, series_roles, identity)
    logger.info("de-identified export", extra={"files": dict(counts)})
    return content
