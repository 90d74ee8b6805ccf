"""Upload, list, fetch and delete files of the BIDS dataset. No FastAPI here."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from glioscope_common.errors import InvalidInput, PayloadTooLarge
from glioscope_nifti.files.paths import BidsPath, check_label, parse_bids_path
from glioscope_nifti.files.repository import DatasetRepository
from glioscope_nifti.files.validation import validate_nifti, validate_sidecar
from glioscope_nifti.settings import Settings


class NiftiFileService:
    def __init__(self, settings: Settings, repository: DatasetRepository) -> None:
        self.settings = settings
        self.repository = repository

    # --- writing -------------------------------------------------------------------------------
    async def receive(self, chunks: AsyncIterator[bytes], limit: int, suffix: str) -> tuple[Path, int, str]:
        """Stream a request body into a temp file inside the root; 413 past `limit` bytes."""
        temp = self.repository.new_temp_file(suffix)
        digest = hashlib.sha256()
        size = 0
        try:
            with temp.open("wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if size == 0:
            temp.unlink(missing_ok=True)
            raise InvalidInput("empty body")
        return temp, size, digest.hexdigest()

    async def put(
        self, raw_path: str, chunks: AsyncIterator[bytes], content_length: int | None
    ) -> tuple[dict[str, Any], bool]:
        path = parse_bids_path(raw_path)
        limit = self.settings.max_sidecar_bytes if path.is_sidecar else self.settings.max_upload_bytes
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(f"body of {content_length} bytes exceeds the limit of {limit} bytes")
        temp, size, sha256 = await self.receive(chunks, limit, path.extension)
        try:
            result = await asyncio.to_thread(self._validate_and_commit, path, temp)
        finally:
            temp.unlink(missing_ok=True)
        replaced = result.pop("_replaced")
        return {"path": path.relative, "size_bytes": size, "sha256": sha256, **result}, replaced

    def _validate_and_commit(self, path: BidsPath, temp: Path) -> dict[str, Any]:
        if path.is_sidecar:
            validate_sidecar(temp)
            info: dict[str, Any] = {"shape": None, "voxel_size_mm": None}
        else:
            nifti = validate_nifti(temp, self.settings.max_nifti_uncompressed_bytes)
            info = {"shape": nifti.shape, "voxel_size_mm": nifti.voxel_size_mm}
        self.repository.ensure_dataset()
        info["_replaced"] = self.repository.commit(path, temp)
        return info

    def store_file(self, path: BidsPath, source: Path) -> dict[str, Any]:
        """Validate and store a file produced on this side (conversion output). Moves `source`."""
        digest = hashlib.sha256()
        with source.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
        size = source.stat().st_size
        temp = self.repository.new_temp_file(path.extension)
        shutil.copyfile(source, temp)
        try:
            info = self._validate_and_commit(path, temp)
        finally:
            temp.unlink(missing_ok=True)
        info.pop("_replaced")
        return {"path": path.relative, "size_bytes": size, "sha256": digest.hexdigest(), **info}

    # --- reading -------------------------------------------------------------------------------
    def list(self, subject: str | None, session: str | None) -> list[dict[str, Any]]:
        if subject:
            check_label(subject, "subject")
        if session:
            check_label(session, "session")
        return self.repository.list(subject or None, session or None)

    def open(self, raw_path: str) -> tuple[Path, str]:
        path = parse_bids_path(raw_path)
        media_type = "application/json" if path.is_sidecar else "application/gzip"
        return self.repository.existing(path), media_type

    def delete(self, raw_path: str) -> None:
        self.repository.delete(parse_bids_path(raw_path))
