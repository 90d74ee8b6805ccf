"""Thin NIfTI helpers: a file <-> `Volume` with its own affine (RAS+, mm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glioscope_common.errors import UnprocessableInput
from glioscope_common.volume import Volume

__all__ = ["volume_from_nifti", "volume_to_nifti"]


def volume_from_nifti(path: Path | str) -> Volume:
    """Load a NIfTI file with its own affine (no reorientation).

    Integer images without scaling keep their dtype (label maps); anything else becomes float32.
    A trailing singleton 4th dimension is dropped.
    """
    import nibabel as nib

    img = nib.load(str(path))
    slope, inter = img.dataobj.slope, img.dataobj.inter  # type: ignore[attr-defined]
    raw_dtype = img.get_data_dtype()
    if np.issubdtype(raw_dtype, np.integer) and slope in (1.0, None) and inter in (0.0, None):
        data = np.asarray(img.dataobj, dtype=raw_dtype)
    else:
        data = img.get_fdata(dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UnprocessableInput(f"NIfTI image must be 3-D, got shape {data.shape}")
    return Volume(data=data, affine=np.asarray(img.affine, dtype=float))


def volume_to_nifti(volume: Volume, path: Path | str, dtype: Any = np.float32) -> Path:
    """Save a Volume as NIfTI-1 (.nii or .nii.gz by suffix) with sform = qform = its affine (mm)."""
    import nibabel as nib

    dtype = np.dtype(dtype)
    data = np.asarray(volume.data)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    img = nib.Nifti1Image(data.astype(dtype), volume.affine)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    path = Path(path)
    nib.save(img, str(path))
    return path
