"""DICOM series (zip) -> NIfTI in the BIDS dataset: dcm2niix when available, else pydicom via common."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from glioscope_common.errors import InvalidInput, PayloadTooLarge, UnprocessableInput, UpstreamUnavailable
from glioscope_nifti.convert.zipsafe import extract, inspect_zip
from glioscope_nifti.files.paths import RAW_SUFFIXES, BidsPath, build_raw_path, parse_bids_path
from glioscope_nifti.files.service import NiftiFileService
from glioscope_nifti.settings import Settings


class ConvertService:
    def __init__(self, settings: Settings, files: NiftiFileService) -> None:
        self.settings = settings
        self.files = files

    def dcm2niix_path(self) -> str | None:
        return shutil.which(self.settings.dcm2niix)

    async def convert(
        self,
        subject: str,
        session: str,
        suffix: str,
        entities: dict[str, str],
        chunks: AsyncIterator[bytes],
        content_length: int | None,
    ) -> dict[str, Any]:
        if suffix not in RAW_SUFFIXES:
            raise InvalidInput(f"suffix must be one of {', '.join(RAW_SUFFIXES)}")
        target = build_raw_path(subject, session, suffix, entities)  # 400 before reading the body
        limit = self.settings.max_upload_bytes
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(f"body of {content_length} bytes exceeds the limit of {limit} bytes")
        zip_path, _, _ = await self.files.receive(chunks, limit, ".zip")
        try:
            return await asyncio.to_thread(self._convert_zip, zip_path, target)
        finally:
            zip_path.unlink(missing_ok=True)

    def _convert_zip(self, zip_path: Path, target: BidsPath) -> dict[str, Any]:
        s = self.settings
        members = inspect_zip(zip_path, s.max_zip_members, s.max_zip_uncompressed_bytes, s.max_zip_compression_ratio)
        with tempfile.TemporaryDirectory(prefix="convert-", dir=self.files.repository.tmp_dir) as tmp:
            work = Path(tmp)
            dicom_dir = work / "dicom"
            out_dir = work / "out"
            dicom_dir.mkdir()
            out_dir.mkdir()
            dicoms = extract(zip_path, members, dicom_dir)
            tool = self.dcm2niix_path()
            if tool:
                nifti, sidecar = self._run_dcm2niix(tool, dicom_dir, out_dir)
                converter = "dcm2niix"
            else:
                nifti, sidecar = self._run_pydicom(dicoms, out_dir)
                converter = "pydicom"
            stored = self.files.store_file(target, nifti)
            stored_sidecar = None
            if sidecar is not None:
                sidecar_path = parse_bids_path(target.relative.removesuffix(".nii.gz") + ".json")
                stored_sidecar = self.files.store_file(sidecar_path, sidecar)
        return {**stored, "sidecar": stored_sidecar, "converter": converter}

    def _run_dcm2niix(self, tool: str, dicom_dir: Path, out_dir: Path) -> tuple[Path, Path | None]:
        cmd = [tool, "-z", "y", "-b", "y", "-ba", "y", "-f", "series", "-o", str(out_dir), str(dicom_dir)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.settings.convert_timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise UpstreamUnavailable("dcm2niix timed out") from exc
        outputs = sorted(out_dir.glob("*.nii.gz"))
        if proc.returncode != 0 and not outputs:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise UnprocessableInput(f"dcm2niix could not convert the series: {' | '.join(tail)}")
        if not outputs:
            raise UnprocessableInput("no DICOM image series found in the zip")
        if len(outputs) > 1:
            raise UnprocessableInput(
                f"the zip holds {len(outputs)} series/volumes ({', '.join(p.name for p in outputs)}); send one series"
            )
        nifti = outputs[0]
        sidecar = nifti.with_name(nifti.name.removesuffix(".nii.gz") + ".json")
        return nifti, sidecar if sidecar.exists() else None

    def _run_pydicom(self, dicoms: list[Path], out_dir: Path) -> tuple[Path, Path | None]:
        try:  # imported lazily: the pydicom path is only needed where dcm2niix is missing
            from glioscope_common.dicom.nifti import volume_to_nifti
            from glioscope_common.dicom.read import read_series
        except ImportError as exc:
            raise UpstreamUnavailable("no DICOM converter available: install dcm2niix") from exc
        import numpy as np
        import pydicom
        from pydicom.errors import InvalidDicomError

        datasets = []
        for path in dicoms:
            try:
                datasets.append(pydicom.dcmread(path))
            except (InvalidDicomError, OSError, ValueError):
                continue  # DICOMDIR-less zips often carry README files and the like
        datasets = [ds for ds in datasets if "PixelData" in ds]
        if not datasets:
            raise UnprocessableInput("no DICOM image found in the zip")
        series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
        if len(series) > 1:
            raise UnprocessableInput(f"the zip holds {len(series)} series; send one series")
        volume = read_series(datasets)
        nifti = volume_to_nifti(volume, out_dir / "series.nii.gz", dtype=np.float32)
        first = datasets[0]
        sidecar_values = {
            "Modality": str(first.get("Modality", "")),
            "MagneticFieldStrength": _number(first.get("MagneticFieldStrength")),
            "Manufacturer": str(first.get("Manufacturer", "")),
            "SeriesDescription": str(first.get("SeriesDescription", "")),
            "EchoTime": _seconds(first.get("EchoTime")),
            "RepetitionTime": _seconds(first.get("RepetitionTime")),
            "ConversionSoftware": "glioscope-nifti (pydicom)",
        }
        sidecar = out_dir / "series.json"
        sidecar.write_text(json.dumps({k: v for k, v in sidecar_values.items() if v not in (None, "")}, indent=2))
        return nifti, sidecar


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _seconds(milliseconds: Any) -> float | None:
    value = _number(milliseconds)
    return None if value is None else value / 1000.0

__all__ = ["ConvertService"]
