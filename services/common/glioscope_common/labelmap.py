"""The edited-mask wire format shared by the gateway (validates what a client posts) and the worker
(reads what the gateway stored): gzip of a uint8 label map, voxel (i, j, k) at byte
i + j*nx + k*nx*ny (Cornerstone3D's volume layout; i column, j row, k slice along the normal, as in
`glioscope_common.dicom.read.read_series`).

Decompression is bounded: it never produces more than the expected number of bytes plus one, so a
gzip bomb costs no more memory than an honest payload.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence

import numpy as np

from glioscope_common.errors import PayloadTooLarge, UnprocessableInput

__all__ = ["MAX_LABEL_BYTES", "decode_labels", "encode_labels"]

MAX_LABEL_BYTES = 512 * 1024**2  # decompressed: one byte per voxel
_CHUNK = 4 * 1024**2


def _voxels(dimensions: Sequence[int], max_bytes: int) -> int:
    if len(dimensions) != 3 or any(int(n) < 1 for n in dimensions):
        raise UnprocessableInput("dimensions must be three positive integers")
    count = int(np.prod([int(n) for n in dimensions], dtype=np.int64))
    if count > max_bytes:
        raise PayloadTooLarge(f"a label map of {count} voxels exceeds the limit of {max_bytes} bytes")
    return count


def decode_labels(
    compressed: bytes, dimensions: Sequence[int], max_label: int, *, max_bytes: int = MAX_LABEL_BYTES
) -> np.ndarray:
    """gzip bytes -> uint8 label map indexed [i, j, k] with shape `dimensions` (nx, ny, nz).

    Raises UnprocessableInput (not gzip, truncated, more or fewer bytes than nx*ny*nz, a value above
    `max_label`) or PayloadTooLarge (nx*ny*nz above `max_bytes`)."""
    expected = _voxels(dimensions, max_bytes)
    out = bytearray()
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container only
    data = memoryview(compressed)
    try:
        while True:
            chunk = decompressor.decompress(data, min(_CHUNK, expected + 1 - len(out)))
            out += chunk
            if len(out) > expected:
                raise UnprocessableInput(f"the labels decompress to more than the {expected} bytes the dimensions give")
            data = memoryview(decompressor.unconsumed_tail)
            if decompressor.eof or (not data and not chunk):
                break
    except zlib.error:
        raise UnprocessableInput("the labels are not valid gzip data") from None
    if not decompressor.eof:
        raise UnprocessableInput("the labels' gzip stream is truncated")
    if decompressor.unused_data.strip(b"\0"):
        raise UnprocessableInput("the labels hold data after the gzip stream (one gzip member expected)")
    if len(out) != expected:
        raise UnprocessableInput(
            f"the labels hold {len(out)} bytes; dimensions {list(map(int, dimensions))} need {expected} "
            "(one uint8 per voxel)"
        )
    flat = np.frombuffer(out, dtype=np.uint8)  # no copy
    highest = int(flat.max()) if flat.size else 0
    if highest > max_label:
        bad = sorted(int(v) for v in np.unique(flat[flat > max_label])[:10])
        raise UnprocessableInput(f"labels must be 0..{max_label}; found {bad}")
    nx, ny, nz = (int(n) for n in dimensions)
    return flat.reshape(nz, ny, nx).transpose(2, 1, 0)


def encode_labels(label_map: np.ndarray, compresslevel: int = 6) -> bytes:
    """uint8 label map [i, j, k] -> the wire format (what the viewer sends)."""
    array = np.asarray(label_map, dtype=np.uint8)
    if array.ndim != 3:
        raise ValueError(f"a label map must be 3-D, got shape {array.shape}")
    return gzip.compress(np.ascontiguousarray(array.transpose(2, 1, 0)).tobytes(), compresslevel=compresslevel)
