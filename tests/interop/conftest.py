"""Reuses the end-to-end helpers (the synthetic tumour study, the platform launcher) of tests/e2e."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "glioscope_e2e_helpers"  # the name tests/frontend/conftest.py loads them under: one copy a session
if _NAME in sys.modules:
    e2e = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).resolve().parents[1] / "e2e" / "conftest.py")
    e2e = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    sys.modules[_NAME] = e2e  # dataclasses look their module up
    _spec.loader.exec_module(e2e)  # type: ignore[union-attr]

e2e_case = e2e.e2e_case  # the session fixture: a small synthetic tumour study (oblique geometry)
