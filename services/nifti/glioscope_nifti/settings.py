"""Settings of the NIfTI service (environment prefix GLIOSCOPE_); nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from glioscope_common.settings import CommonSettings

MIB = 1024 * 1024


class Settings(CommonSettings):
    # Root of the BIDS dataset (a folder or a mounted volume/PVC).
    nifti_root: Path = Path("var/nifti")
    # Largest accepted request body (a .nii.gz upload or a DICOM zip): 413 above it.
    max_upload_bytes: int = Field(512 * MIB, gt=0)
    # Largest accepted JSON sidecar.
    max_sidecar_bytes: int = Field(1 * MIB, gt=0)
    # Largest decompressed NIfTI (guards against gzip bombs in uploads).
    max_nifti_uncompressed_bytes: int = Field(4096 * MIB, gt=0)
    # DICOM zip limits, checked before anything is extracted.
    max_zip_members: int = Field(5000, gt=0)
    max_zip_uncompressed_bytes: int = Field(2048 * MIB, gt=0)
    max_zip_compression_ratio: float = Field(100.0, gt=1)
    # dcm2niix executable (looked up on PATH); the pydicom path is used when it is missing.
    dcm2niix: str = "dcm2niix"
    convert_timeout_s: float = Field(300.0, gt=0)
