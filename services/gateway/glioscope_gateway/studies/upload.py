"""Turning an upload (many files or a zip) into validated DICOM instances, before anything is stored."""

from __future__ import annotations

import io
import lzma
import posixpath
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pydicom
from pydicom.errors import InvalidDicomError

from glioscope_common.errors import InvalidInput, PayloadTooLarge, UnprocessableInput

ZIP_MAGIC = b"PK\x03\x04"
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_zip_members: int
    max_zip_uncompressed_bytes: int
    max_zip_ratio: float


@dataclass(frozen=True)
class Instance:
    raw: bytes
    dataset: pydicom.Dataset

    @property
    def study_instance_uid(self) -> str:
        return str(self.dataset.StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def safe_member_name(name: str) -> str:
    """Reject zip member names that could escape a folder (we never extract to disk, but we refuse them anyway)."""
    if "\x00" in name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidInput("zip member with an unsafe name (absolute path, drive or backslash)")
    parts = name.split("/")
    if any(part == ".." for part in parts) or posixpath.normpath(name).startswith(".."):
        raise InvalidInput("zip member with a path that escapes the archive ('..')")
    return name


def unpack_zip(data: bytes, limits: UploadLimits) -> list[tuple[str, bytes]]:
    """Members of a zip, checked for traversal and zip bombs from the central directory before any inflation."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidInput("the zip archive is corrupt") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > limits.max_zip_members:
            raise PayloadTooLarge(f"the zip has {len(members)} files; the limit is {limits.max_zip_members}")
        total = 0
        for member in members:
            safe_member_name(member.filename)
            if member.flag_bits & 0x1:
                raise InvalidInput("encrypted zip members are not supported")
            total += member.file_size
            ratio = member.file_size / max(member.compress_size, 1)
            if ratio > limits.max_zip_ratio and member.file_size > 1024 * 1024:
                raise PayloadTooLarge(f"a zip member expands {ratio:.0f}-fold: refused as a zip bomb")
        if total > limits.max_zip_uncompressed_bytes:
            raise PayloadTooLarge(f"the zip expands to {total} bytes; the limit is {limits.max_zip_uncompressed_bytes}")
        files = []
        for member in members:
            base = posixpath.basename(member.filename)
            if base.startswith(".") or base.upper() == "DICOMDIR" or member.filename.startswith("__MACOSX/"):
                continue
            # Read with a hard cap: the central directory may lie about sizes. Reading to the end checks
            # the member's CRC-32; a damaged member is the client's bad input, named in the answer.
            try:
                with archive.open(member) as handle:
                    content = handle.read(member.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError,
                    RuntimeError, ValueError) as exc:
                reason = str(exc)[:80] or type(exc).__name__
                raise InvalidInput(f"zip member {member.filename[:120]!r} is corrupt ({reason})") from exc
            if len(content) > member.file_size:
                raise PayloadTooLarge("a zip member is larger than its header says: refused")
            files.append((member.filename, content))
        return files


def expand_upload(files: Iterable[tuple[str, bytes]], limits: UploadLimits) -> list[tuple[str, bytes]]:
    """Flatten zips among the uploaded files (one level; a zip inside a zip is refused)."""
    out: list[tuple[str, bytes]] = []
    for name, content in files:
        if content[:4] == ZIP_MAGIC:
            for member_name, member in unpack_zip(content, limits):
                if member[:4] == ZIP_MAGIC:
                    raise InvalidInput("nested zip archives are not supported")
                out.append((member_name, member))
        else:
            out.append((name, content))
        if len(out) > limits.max_files:
            raise PayloadTooLarge(f"more than {limits.max_files} files in one upload")
    if not out:
        raise InvalidInput("the upload holds no files")
    return out


def _expected_pixel_bytes(ds: pydicom.Dataset) -> int | None:
    if ds.file_meta.get("TransferSyntaxUID") is None or ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    return int(ds.Rows) * int(ds.Columns) * frames * samples * int(ds.BitsAllocated) // 8


def parse_instance(name: str, content: bytes) -> Instance:
    """A validated DICOM instance, or InvalidInput naming the file (file names come from the client, not PHI)."""
    label = posixpath.basename(name)[:80] or "(unnamed)"
    try:
        dataset = pydicom.dcmread(io.BytesIO(content), force=False)
    except InvalidDicomError as exc:
        raise InvalidInput(f"{label}: not a DICOM file (no DICM preamble)") from exc
    except Exception as exc:  # pydicom raises many types on truncated input
        raise InvalidInput(f"{label}: unreadable DICOM ({type(exc).__name__})") from exc
    try:
        missing = [kw for kw in REQUIRED_UIDS if not str(dataset.get(kw, "")).strip()]
        if missing:
            raise InvalidInput(f"{label}: missing {', '.join(missing)}")
        if "PixelData" in dataset:
            expected = _expected_pixel_bytes(dataset)
            actual = len(dataset.PixelData)
            if expected is not None and actual < expected:
                raise InvalidInput(f"{label}: truncated pixel data ({actual} of {expected} bytes)")
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"{label}: malformed DICOM ({type(exc).__name__})") from exc
    return Instance(raw=content, dataset=dataset)


def iter_instances(members: Iterable[tuple[str, bytes]]) -> Iterator[Instance]:
    """Parse the files one by one (lazily, so a caller can store while it validates), refusing a second
    study and skipping repeated SOP instances."""
    study: str | None = None
    seen: set[str] = set()
    for name, content in members:
        instance = parse_instance(name, content)
        if study is None:
            study = instance.study_instance_uid
        elif instance.study_instance_uid != study:
            raise InvalidInput("an upload must hold exactly one study; it holds more than one")
        if instance.sop_instance_uid in seen:
            continue
        seen.add(instance.sop_instance_uid)
        yield instance


def parse_upload(files: Sequence[tuple[str, bytes]], limits: UploadLimits) -> list[Instance]:
    return list(iter_instances(expand_upload(files, limits)))


def group_by_series(instances: Iterable[Instance]) -> dict[str, list[Instance]]:
    groups: dict[str, list[Instance]] = defaultdict(list)
    for instance in instances:
        groups[instance.series_instance_uid].append(instance)
    return dict(groups)


def require_image_series(instances: Sequence[Instance]) -> None:
    if not any("PixelData" in i.dataset for i in instances):
        raise UnprocessableInput("the study holds no images")
