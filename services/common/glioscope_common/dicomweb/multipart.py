"""multipart/related bodies (PS3.18 8.6.1.2): STOW-RS requests, WADO-RS responses."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from glioscope_common.errors import UpstreamUnavailable

__all__ = ["encode_multipart_related", "parse_multipart_related"]


def encode_multipart_related(parts: Iterable[bytes], content_type: str = "application/dicom") -> tuple[bytes, str]:
    """Body and Content-Type header of a multipart/related message (PS3.18 8.6.1.2)."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
    for part in parts:
        chunks += [head, part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{content_type}"; boundary={boundary}'


def _boundary(content_type: str) -> str:
    m = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', content_type, re.IGNORECASE)
    if not m:
        raise UpstreamUnavailable(f"multipart response without a boundary: {content_type!r}")
    return m.group(2) or m.group(1)


def parse_multipart_related(body: bytes, content_type: str) -> list[bytes]:
    """Split a multipart/related body into its part payloads, in one linear pass (find + slice)."""
    delimiter = b"--" + _boundary(content_type).encode()
    view = memoryview(body)
    parts: list[bytes] = []
    pos = body.find(delimiter)
    if pos < 0:
        return parts
    sep = b"\r\n" + delimiter
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":  # closing delimiter
            break
        header_end = body.find(b"\r\n\r\n", pos)
        if header_end < 0:
            break
        start = header_end + 4
        end = body.find(sep, start)
        if end < 0:  # tolerate a missing closing delimiter
            parts.append(bytes(view[start:]))
            break
        parts.append(bytes(view[start:end]))
        pos = end + 2
    return parts
