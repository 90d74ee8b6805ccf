"""STOW-RS request bodies: the study of every instance, read before the body goes to the PACS.

A caller restricted to some projects may store only into studies of those projects (or new ones).
The multipart/related body is parsed here, each part's StudyInstanceUID read without its pixel data,
and the body the PACS receives is re-encoded from exactly the parts that were checked, so that no
difference between this parser and Orthanc's can smuggle an unchecked part through.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass

import pydicom
from pydicom.errors import InvalidDicomError

from glioscope_common.errors import InvalidInput
from glioscope_gateway.dicomweb_proxy.paths import MAX_UID_LENGTH, UID

DICOM_PART = "application/dicom"
_PARAM = re.compile(r';\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass(frozen=True)
class StowPart:
    content: bytes
    study_instance_uid: str


@dataclass(frozen=True)
class StowBody:
    parts: tuple[StowPart, ...]

    @property
    def study_instance_uids(self) -> set[str]:
        return {p.study_instance_uid for p in self.parts}

    def encode(self) -> tuple[bytes, str]:
        """The body and its content type, with a fresh boundary."""
        boundary = "glioscope-" + secrets.token_hex(16)
        chunks: list[bytes] = []
        for part in self.parts:
            chunks.append(f"--{boundary}\r\nContent-Type: {DICOM_PART}\r\n\r\n".encode())
            chunks.append(part.content)
            chunks.append(b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode())
        return b"".join(chunks), f'multipart/related; type="{DICOM_PART}"; boundary={boundary}'


def _params(content_type: str) -> tuple[str, dict[str, str]]:
    media_type = content_type.split(";", 1)[0].strip().lower()
    params = {}
    for name, value in _PARAM.findall(content_type):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name.lower()] = value
    return media_type, params


def _part_study_uid(content: bytes, index: int) -> str:
    try:
        dataset = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True, defer_size=1024)
        value = dataset["StudyInstanceUID"].value
    except (InvalidDicomError, AttributeError, ValueError, EOFError, KeyError, TypeError, RecursionError,
            MemoryError, OverflowError, IndexError, UnicodeError, NotImplementedError) as exc:
        raise InvalidInput(f"STOW-RS part {index + 1} is not a DICOM instance with a StudyInstanceUID") from exc
    # One value, digits and dots, as DCMTK would read it too (no padding, spaces or second value).
    if not isinstance(value, str) or len(value) > MAX_UID_LENGTH or not UID.fullmatch(value):
        raise InvalidInput(f"STOW-RS part {index + 1} has an invalid StudyInstanceUID")
    return value


def parse_stow(body: bytes, content_type: str) -> StowBody:
    """The parts of a `multipart/related; type="application/dicom"` body, or InvalidInput."""
    media_type, params = _params(content_type)
    boundary = params.get("boundary", "")
    if media_type != "multipart/related" or not boundary or len(boundary) > 200:
        raise InvalidInput("STOW-RS needs a multipart/related body with a boundary")
    declared = params.get("type", DICOM_PART).lower()
    if declared != DICOM_PART:
        raise InvalidInput("only application/dicom parts may be stored through the gateway")
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise InvalidInput("the STOW-RS body has no closing boundary")
    parts: list[StowPart] = []
    for index, piece in enumerate(pieces[1:-1]):
        if not piece.startswith(b"\r\n") or not piece.endswith(b"\r\n"):
            raise InvalidInput(f"STOW-RS part {index + 1} is malformed")
        head, separator, content = piece[2:-2].partition(b"\r\n\r\n")
        if not separator:
            raise InvalidInput(f"STOW-RS part {index + 1} has no header block")
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-type" and _params(value)[0] != DICOM_PART:
                raise InvalidInput("only application/dicom parts may be stored through the gateway")
        parts.append(StowPart(content, _part_study_uid(content, index)))
    if not parts:
        raise InvalidInput("the STOW-RS body has no parts")
    return StowBody(tuple(parts))
