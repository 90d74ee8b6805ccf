"""Inspect a zip before extracting anything: traversal, member count, size and compression ratio."""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

from glioscope_common.errors import InvalidInput, PayloadTooLarge

_RATIO_FLOOR_BYTES = 1024 * 1024  # below this total, a high ratio is harmless (e.g. blank slices)


def inspect_zip(
    zip_path: Path, max_members: int, max_uncompressed_bytes: int, max_ratio: float
) -> list[zipfile.ZipInfo]:
    """Return the file members to extract, or raise InvalidInput / PayloadTooLarge."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"body is not a zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
    if len(infos) > max_members:
        raise InvalidInput(f"zip has {len(infos)} members; at most {max_members} are accepted")
    files: list[zipfile.ZipInfo] = []
    total = 0
    compressed = 0
    for info in infos:
        name = info.filename
        if "\x00" in name or "\\" in name:
            raise InvalidInput(f"zip member {name!r} has a NUL or backslash in its name")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise InvalidInput(f"zip member {name!r} has an absolute path")
        if ".." in PurePosixPath(name).parts:
            raise InvalidInput(f"zip member {name!r} points outside the archive ('..')")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InvalidInput(f"zip member {name!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise InvalidInput(f"zip member {name!r} is encrypted")
        if info.is_dir():
            continue
        total += info.file_size
        compressed += info.compress_size
        if total > max_uncompressed_bytes:
            raise PayloadTooLarge(f"zip expands to more than {max_uncompressed_bytes} bytes")
        if info.file_size > _RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise PayloadTooLarge(
                f"zip member {name!r} has a compression ratio above {max_ratio:g} (zip bomb?)"
            )
        files.append(info)
    if total > _RATIO_FLOOR_BYTES and total > max_ratio * max(compressed, 1):
        raise PayloadTooLarge(f"zip has a compression ratio above {max_ratio:g} (zip bomb?)")
    if not files:
        raise InvalidInput("zip holds no files")
    return files


def extract(zip_path: Path, members: list[zipfile.ZipInfo], destination: Path) -> list[Path]:
    """Extract checked members under destination with flat, generated names; enforce declared sizes."""
    out: list[Path] = []
    with zipfile.ZipFile(zip_path) as archive:
        for index, info in enumerate(members):
            target = destination / f"{index:05d}.dcm"
            written = 0
            with archive.open(info) as src, target.open("wb") as dst:
                while chunk := src.read(1024 * 1024):
                    written += len(chunk)
                    if written > info.file_size:
                        raise InvalidInput(f"zip member {info.filename!r} is larger than its header says")
                    dst.write(chunk)
            out.append(target)
    return out
