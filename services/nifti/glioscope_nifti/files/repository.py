"""The filesystem is the store: a BIDS dataset under one root, written atomically."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from glioscope_common.errors import InvalidInput, NotFound
from glioscope_nifti.files.paths import DERIVATIVES_PREFIX, BidsPath, parse_bids_path, resolve_inside

TMP_DIR = ".tmp"  # hidden from BIDS tools (dot folder) and from listings


class DatasetRepository:
    def __init__(self, root: Path, version: str) -> None:
        self.root = root
        self.version = version

    @property
    def tmp_dir(self) -> Path:
        return self.root / TMP_DIR

    def ensure_dataset(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        raw = self.root / "dataset_description.json"
        if not raw.exists():
            self._write_json(raw, {"Name": "Glioscope", "BIDSVersion": "1.9.0", "DatasetType": "raw"})
        deriv = self.root / DERIVATIVES_PREFIX / "dataset_description.json"
        if not deriv.exists():
            deriv.parent.mkdir(parents=True, exist_ok=True)
            self._write_json(
                deriv,
                {
                    "Name": "Glioscope segmentations",
                    "BIDSVersion": "1.9.0",
                    "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": "Glioscope", "Version": self.version}],
                },
            )

    def _write_json(self, target: Path, value: dict[str, object]) -> None:
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps(value, indent=2) + "\n")
        os.replace(tmp, target)

    def new_temp_file(self, suffix: str) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{uuid.uuid4().hex}{suffix}"

    def target(self, path: BidsPath) -> Path:
        return resolve_inside(self.root, path.relative)

    def commit(self, path: BidsPath, temp_file: Path) -> bool:
        """Move a finished temp file into place; True when it replaced an existing file."""
        target = self.target(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Re-check after mkdir: a symlinked folder created concurrently must not lead outside.
        target = self.target(path)
        if target.is_dir():
            raise InvalidInput("a folder exists at that path")
        existed = target.exists()
        os.replace(temp_file, target)
        return existed

    def existing(self, path: BidsPath) -> Path:
        target = self.target(path)
        if not target.is_file():
            raise NotFound(f"no file at {path.relative}")
        return target

    def delete(self, path: BidsPath) -> None:
        target = self.existing(path)
        target.unlink()
        stop = {self.root.resolve(), (self.root / DERIVATIVES_PREFIX).resolve(), (self.root / "derivatives").resolve()}
        parent = target.parent
        while parent not in stop and parent.is_relative_to(self.root.resolve()):
            try:
                parent.rmdir()  # only succeeds when empty
            except OSError:
                break
            parent = parent.parent

    def list(self, subject: str | None, session: str | None) -> list[dict[str, object]]:
        root = self.root.resolve()
        entries: list[dict[str, object]] = []
        if not root.exists():
            return entries
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                full = Path(dirpath) / name
                relative = full.relative_to(root).as_posix()
                try:
                    parsed = parse_bids_path(relative)
                except InvalidInput:
                    continue  # dataset_description.json and anything not ours
                if subject and parsed.subject != subject:
                    continue
                if session and parsed.session != session:
                    continue
                stat = full.stat()
                entries.append(
                    {
                        "path": relative,
                        "size_bytes": stat.st_size,
                        "modified": datetime.fromtimestamp(stat.st_mtime, UTC),
                        "subject": parsed.subject,
                        "session": parsed.session,
                        "suffix": parsed.suffix,
                        "derivative": parsed.derivative,
                    }
                )
        return entries

    def check_writable(self) -> None:
        self.ensure_dataset()
        probe = self.new_temp_file(".probe")
        probe.write_bytes(b"ok")
        probe.unlink()
