"""Identify the T1 / T1c / T2 / FLAIR series of an MR study from DICOM metadata.

Shared by the gateway (to answer 422 before queuing a job) and the inference worker/CLI.

Rules, in order:
1. `overrides` (role -> series uid) always win; an overridden series is not used for another role.
2. Series that cannot be a structural input are ignored: non-MR modality, ImageType
   LOCALIZER/SCOUT/MIP/PROJECTION/SUBTRACTION or a diffusion/perfusion map,
   localizer/diffusion/perfusion/susceptibility/angio descriptions, fewer than
   `MIN_INSTANCES` images (a 3-D series stored as one multi-frame instance is accepted when
   MRAcquisitionType is 3D).
3. Each remaining series gets a role from its SeriesDescription + ProtocolName keywords (flair,
   dark-fluid, tirm -> FLAIR; t2 -> T2; t1, mprage, spgr, bravo, tfe, vibe... -> T1; "T1 FLAIR" is
   T1-weighted). Without keywords, physics decides: inversion time >= 1500 ms with TR >= 4000 ms ->
   FLAIR; inversion time 300-1300 ms (IR-prepared) -> T1; TE >= 60 ms and TR >= 1500 ms -> T2;
   TE <= 30 ms and TR <= 1200 ms (spin echo or gradient echo), or TE < 10 ms and TR < 3000 ms -> T1.
4. A T1 series is T1c when ContrastBolusAgent is set (and is not "none"), or its text says post /
   +C / C+ / Gd / gado / contrast / CE / KM / enhanced, unless it says pre / without / "non".
5. Several candidates for one role: primary before derived (a DERIVED reformat, e.g. an MPR of the
   post-contrast 3-D T1, is used only when no acquired series has the role; some sites send only
   that), then keyword-identified before physics-only, 3-D before 2-D, then more slices.

Nothing here raises: `missing_sequences` tells the caller what is absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROLES: tuple[str, ...] = ("T1", "T1c", "T2", "FLAIR")
MIN_INSTANCES = 10

_IGNORE_TEXT = re.compile(
    r"(localizer|localiser|\bscout|survey|\bloc\b|3 ?plane|aahead|\bcal\b|calibration|"
    r"\bdwi\b|diff|\badc\b|trace|\bdti\b|\bfa\b|tensor|\bep2d\b|perf|\bdsc\b|\bdce\b|\basl\b|"
    r"\bswi\b|\bswan\b|t2\s*\*|t2star|t2 star|hemo|\bgre\b.*\bt2\b|\bmra\b|\btof\b|angio|"
    r"\bmip\b|\bsub\b|subtract|mosaic|\bmap\b|screen ?save|\bspectro|\bsvs\b|\bcsi\b)"
)
_FLAIR = re.compile(r"(flair|dark ?fluid|\btirm|fluid attenuated|\bda ?fl\b)")
_T2 = re.compile(r"\bt2")
_T1 = re.compile(r"(\bt1|mprage|mp ?rage|mp2rage|spgr|bravo|\btfe\b|\btfl|\bvibe\b|\bflash\b)")
_POST = re.compile(
    r"(\+ ?c\b|\bc ?\+|\bpost|\bgd\b|\bgad|gado|contrast|\bce\b|\bkm\b|\+ ?km|enhanc|\bt1c\b|\bt1ce\b|"
    r"\bt1 ?gd\b|\bt1wce\b|\bmdc\b|\bpc\b|\bwith\b)"
)
_PRE = re.compile(r"(\bpre\b|\bprecontrast|\bpre ?gd|\bwithout\b|\bnon ?contrast|\bnative\b|\bnat\b|\bw ?o\b)")
_NO_AGENT = {"", "none", "no", "n/a", "na", "0", "nein"}
# ImageType values of computed maps (derived series that are not anatomical images)
_MAP_IMAGE_TYPES = {"DIFFUSION", "ADC", "TRACEW", "EADC", "FA", "PERFUSION", "CBV", "CBF", "MTT", "TTP", "T1 MAP", "T2 MAP"}


@dataclass
class SeriesInfo:
    series_instance_uid: str
    modality: str = "MR"
    series_description: str = ""
    protocol_name: str = ""
    sequence_name: str = ""
    scanning_sequence: str = ""
    sequence_variant: str = ""
    contrast_bolus_agent: str = ""
    echo_time: float | None = None
    repetition_time: float | None = None
    inversion_time: float | None = None
    mr_acquisition_type: str = ""
    number_of_instances: int = 0
    image_type: str = ""
    frame_of_reference_uid: str = ""

    @classmethod
    def from_dataset(cls, ds: Any, number_of_instances: int | None = None) -> "SeriesInfo":
        """From one pydicom Dataset of the series (`number_of_instances` defaults to its NumberOfFrames or 1)."""

        def text(keyword: str) -> str:
            value = getattr(ds, keyword, "")
            if value is None:
                return ""
            if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                return "\\".join(str(v) for v in value)
            return str(value)

        def number(keyword: str) -> float | None:
            return _to_float(getattr(ds, keyword, None))

        if number_of_instances is None:
            number_of_instances = int(_to_float(getattr(ds, "NumberOfFrames", None)) or 1)
        return cls(
            series_instance_uid=text("SeriesInstanceUID"),
            modality=text("Modality"),
            series_description=text("SeriesDescription"),
            protocol_name=text("ProtocolName"),
            sequence_name=text("SequenceName"),
            scanning_sequence=text("ScanningSequence"),
            sequence_variant=text("SequenceVariant"),
            contrast_bolus_agent=text("ContrastBolusAgent"),
            echo_time=number("EchoTime"),
            repetition_time=number("RepetitionTime"),
            inversion_time=number("InversionTime"),
            mr_acquisition_type=text("MRAcquisitionType"),
            number_of_instances=int(number_of_instances),
            image_type=text("ImageType"),
            frame_of_reference_uid=text("FrameOfReferenceUID"),
        )

    @classmethod
    def from_dicom_json(cls, item: Mapping[str, Any], number_of_instances: int | None = None) -> "SeriesInfo":
        """From a DICOM JSON object (QIDO-RS series/instance result or WADO-RS metadata)."""

        def values(tag: str) -> list[Any]:
            element = item.get(tag) or {}
            return list(element.get("Value") or [])

        def text(tag: str) -> str:
            out = []
            for v in values(tag):
                if isinstance(v, dict):  # PN
                    v = v.get("Alphabetic", "")
                out.append(str(v))
            return "\\".join(out)

        def number(tag: str) -> float | None:
            v = values(tag)
            return _to_float(v[0]) if v else None

        if number_of_instances is None:
            number_of_instances = int(number("00201209") or number("00280008") or 0)
        return cls(
            series_instance_uid=text("0020000E"),
            modality=text("00080060"),
            series_description=text("0008103E"),
            protocol_name=text("00181030"),
            sequence_name=text("00180024"),
            scanning_sequence=text("00180020"),
            sequence_variant=text("00180021"),
            contrast_bolus_agent=text("00180010"),
            echo_time=number("00180081"),
            repetition_time=number("00180080"),
            inversion_time=number("00180082"),
            mr_acquisition_type=text("00180023"),
            number_of_instances=int(number_of_instances),
            image_type=text("00080008"),
            frame_of_reference_uid=text("00200052"),
        )

    # -- derived properties ------------------------------------------------------------------
    @property
    def text(self) -> str:
        raw = f"{self.series_description} {self.protocol_name}".lower()
        return re.sub(r"[_\-/\\.,;:()\[\]]+", " ", raw)

    @property
    def is_3d(self) -> bool:
        return self.mr_acquisition_type.strip().upper() == "3D"

    @property
    def is_derived(self) -> bool:
        return "DERIVED" in self.image_type.upper().split("\\")

    @property
    def has_contrast_agent(self) -> bool:
        return self.contrast_bolus_agent.strip().lower() not in _NO_AGENT


def _to_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_candidate(s: SeriesInfo) -> bool:
    """Can this series be a structural input at all? (rule 2)"""
    if s.modality and s.modality.upper() != "MR":
        return False
    image_type = s.image_type.upper()
    if any(word in image_type for word in ("LOCALIZER", "SCOUT", "MIP", "PROJECTION", "SUBTRACTION")):
        return False
    if set(image_type.split("\\")) & _MAP_IMAGE_TYPES:
        return False
    if _IGNORE_TEXT.search(s.text):
        return False
    if s.number_of_instances < MIN_INSTANCES and not (s.is_3d and s.number_of_instances >= 1):
        return False
    return True


def _keyword_role(s: SeriesInfo) -> str | None:
    text = s.text
    flair, t1, t2 = bool(_FLAIR.search(text)), bool(_T1.search(text)), bool(_T2.search(text))
    if flair:
        # GE/Philips "T1 FLAIR" is a T1-weighted inversion recovery (TI ~ 800-1000 ms).
        if t1 and not t2 and not (s.inversion_time and s.inversion_time >= 1500):
            return "T1"
        return "FLAIR"
    if t1 and not t2:
        return "T1"
    if t2 and not t1:
        return "T2"
    if t1 and t2:  # e.g. "t1 t2 mapping": undecidable by words
        return None
    return None


def _physics_role(s: SeriesInfo) -> str | None:
    te, tr, ti = s.echo_time, s.repetition_time, s.inversion_time
    inversion = bool(ti and ti > 0) or "IR" in s.scanning_sequence.upper().split("\\")
    if ti and ti >= 1500 and (tr is None or tr >= 4000):
        return "FLAIR"
    if inversion and ti and 300 <= ti <= 1300:
        return "T1"
    if te is None or tr is None:
        return None
    if te >= 60 and tr >= 1500:
        return "T2"
    if te <= 30 and tr <= 1200:
        return "T1"
    if te < 10 and tr < 3000:  # 3-D gradient echo (MPRAGE-like) without a recorded TI
        return "T1"
    return None


def _is_post_contrast(s: SeriesInfo) -> bool:
    text = s.text
    if _PRE.search(text) and not s.has_contrast_agent:
        return False
    return s.has_contrast_agent or bool(_POST.search(text))


def classify(s: SeriesInfo) -> tuple[str | None, int]:
    """(role or None, confidence: 2 keywords, 1 physics only, 0 unknown) for one series."""
    if not is_candidate(s):
        return None, 0
    role, confidence = _keyword_role(s), 2
    if role is None:
        role, confidence = _physics_role(s), 1
    if role is None:
        return None, 0
    if role == "T1" and _is_post_contrast(s):
        role = "T1c"
    return role, confidence


def _normalise_role(role: str) -> str | None:
    for r in ROLES:
        if r.lower() == role.strip().lower():
            return r
    aliases = {"t1ce": "T1c", "t1gd": "T1c", "t1post": "T1c", "t2flair": "FLAIR", "t2-flair": "FLAIR"}
    return aliases.get(role.strip().lower())


def identify_sequences(
    series: Sequence[SeriesInfo], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Map "T1", "T1c", "T2", "FLAIR" to series_instance_uid (roles not found are absent)."""
    mapping: dict[str, str] = {}
    for role, uid in (overrides or {}).items():
        canonical = _normalise_role(role)
        if canonical and uid:
            mapping[canonical] = uid
    taken = set(mapping.values())

    candidates: dict[str, list[tuple[tuple, SeriesInfo]]] = {r: [] for r in ROLES}
    for s in series:
        if s.series_instance_uid in taken:
            continue
        role, confidence = classify(s)
        if role is None or role in mapping:
            continue
        rank = (not s.is_derived, confidence, s.is_3d, s.number_of_instances)
        candidates[role].append((rank, s))

    for role in ROLES:
        if role in mapping or not candidates[role]:
            continue
        best = max(candidates[role], key=lambda c: c[0])[1]
        mapping[role] = best.series_instance_uid
    return {r: mapping[r] for r in ROLES if r in mapping}


def missing_sequences(mapping: Mapping[str, str]) -> list[str]:
    """The roles of ROLES without a series in `mapping`, in ROLES order."""
    return [r for r in ROLES if not mapping.get(r)]
