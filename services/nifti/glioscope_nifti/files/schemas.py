from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class StoredFile(BaseModel):
    path: str
    size_bytes: int
    sha256: str
    shape: list[int] | None = None  # None for JSON sidecars
    voxel_size_mm: list[float] | None = None


class FileEntry(BaseModel):
    path: str
    size_bytes: int
    modified: datetime
    subject: str
    session: str
    suffix: str
    derivative: bool


class FileList(BaseModel):
    files: list[FileEntry]


class ConvertedSeries(StoredFile):
    sidecar: StoredFile | None = None
    converter: str
