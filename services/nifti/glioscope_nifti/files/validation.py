"""Checks that an uploaded file really is a sane NIfTI image, without loading the voxels into memory."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip, isal_zlib

from glioscope_common.errors import InvalidInput, PayloadTooLarge

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class NiftiInfo:
    shape: list[int]
    voxel_size_mm: list[float]


def _decompressed_size(path: Path, limit: int) -> int:
    total = 0
    try:
        with igzip.open(path, "rb") as stream:  # ISA-L: about twice zlib's speed
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLarge(f"decompressed NIfTI exceeds {limit} bytes")
    except (OSError, EOFError, isal_zlib.error) as exc:
        raise InvalidInput(f"corrupt gzip stream: {exc}") from exc
    return total


def validate_nifti(path: Path, max_uncompressed_bytes: int) -> NiftiInfo:
    """`path` must end in .nii.gz (nibabel picks the format by name)."""
    with path.open("rb") as fh:
        if fh.read(2) != GZIP_MAGIC:
            raise InvalidInput("body is not gzip-compressed; a .nii.gz file is expected")
    size = _decompressed_size(path, max_uncompressed_bytes)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types on garbage
        raise InvalidInput(f"not a readable NIfTI image: {exc}") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InvalidInput("not a NIfTI-1/NIfTI-2 image")
    header = img.header
    shape = [int(s) for s in img.shape]
    if len(shape) not in (3, 4) or any(s < 1 for s in shape):
        raise InvalidInput(f"NIfTI must be 3-D (or 4-D) with positive dimensions, got shape {shape}")
    zooms = [float(z) for z in header.get_zooms()[:3]]
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        raise InvalidInput(f"voxel sizes must be positive and finite, got {zooms}")
    affine = img.affine
    if not np.all(np.isfinite(affine)):
        raise InvalidInput("affine contains NaN or Inf")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InvalidInput("affine is singular")
    try:
        itemsize = np.dtype(img.get_data_dtype()).itemsize
    except TypeError as exc:
        raise InvalidInput(f"unsupported NIfTI datatype: {exc}") from exc
    expected = int(header["vox_offset"]) + int(np.prod(shape)) * itemsize
    if size < expected:
        raise InvalidInput(f"NIfTI is truncated: header promises {expected} bytes, file holds {size}")
    if np.issubdtype(np.dtype(img.get_data_dtype()), np.floating):
        # Scanners and converters never write NaN/Inf voxels; downstream statistics would turn to NaN.
        try:
            data = np.asanyarray(img.dataobj)
        except (OSError, EOFError, ValueError, zlib.error) as exc:  # nibabel reads with zlib
            raise InvalidInput(f"corrupt voxel data: {exc}") from exc
        if not np.isfinite(data).all():
            raise InvalidInput("voxel data contains NaN or Inf")
    return NiftiInfo(shape=shape, voxel_size_mm=[round(z, 6) for z in zooms])


def validate_sidecar(path: Path) -> None:
    try:
        value = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"sidecar is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("a BIDS sidecar must be a JSON object")
