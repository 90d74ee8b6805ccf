"""Reuses the end-to-end helpers (the synthetic tumour study, the platform launcher) of tests/e2e."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "glioscope_e2e_helpers", Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"
)
e2e = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules[_spec.name] = e2e  # dataclasses look their module up
_spec.loader.exec_module(e2e)  # type: ignore[union-attr]

e2e_case = e2e.e2e_case  # the session fixture: a small synthetic tumour study (oblique geometry)
