"""Issue 6, point 4: a Dockerfile per service and for the frontend, non-root, slim, pinned base.

No Docker engine runs here, so the images are not built; these rules are checked on the files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "services" / name / "Dockerfile" for name in ("gateway", "inference", "reporting", "nifti")]
DOCKERFILES.append(ROOT / "frontend" / "Dockerfile")
PINNED = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*$")  # name:1.2.3[-variant], never :latest or untagged


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_is_pinned_slim_and_non_root(dockerfile: Path) -> None:
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert bases, "no FROM"
    for base in bases:
        assert PINNED.match(base), f"{base}: pin the base image to a version"
    final_base = bases[-1]
    assert any(word in final_base for word in ("slim", "alpine", "unprivileged")), f"{final_base}: use a slim base"
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "the image must switch to a non-root USER"
    assert users[-1].isdigit() and int(users[-1]) != 0, f"USER {users[-1]}: a numeric non-root uid"
