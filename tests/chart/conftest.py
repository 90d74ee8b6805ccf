from __future__ import annotations

import sys
from pathlib import Path

from glioscope_common.dev.testing import require_executable, require_module  # noqa: F401 (the chart tests import it from here)

sys.path.insert(0, str(Path(__file__).resolve().parent))


def require_binary(name: str) -> str:
    """The binary's path; a missing one fails the test in CI (CI=true) and skips it elsewhere."""
    return require_executable(name)
