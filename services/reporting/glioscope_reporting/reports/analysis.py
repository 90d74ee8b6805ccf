"""Structured fields derived from the measurements: enhancement pattern, change since the prior study and a
suggested RANO-style response category. Pure functions; every threshold is here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.claims import ENHANCEMENT_MIN_ML, EnhancementPattern, assess
from glioscope_reporting.reports.formatting import (
    DETECTION_MIN_ML,
    ENHANCING_LABEL,
    NECROTIC_LABEL,
    label_volume,
    region,
    reported,
)
from glioscope_reporting.reports.location import Location, locate

# RANO-style thresholds on the change of the bidimensional product (suggestion only).
PR_MAX_CHANGE_PCT = -50.0
PD_MIN_CHANGE_PCT = 25.0

Rano = Literal["CR", "PR", "SD", "PD"]


class Enhancement(BaseModel):
    pattern: EnhancementPattern
    enhancing_ml: float
    necrotic_ml: float
    ratio: float | None  # enhancing / necrotic; None without necrosis


class Comparison(BaseModel):
    prior_report_id: str
    prior_study_instance_uid: str
    prior_study_date: str
    volume_change_ml: dict[str, float]  # the regions reported in both studies (WT, TC, ET): current - prior
    volume_change_pct: dict[str, float | None]
    prior_bidimensional_product_mm2: float
    bidimensional_product_mm2: float
    bidimensional_change_pct: float | None
    rano_suggestion: Rano | None  # None: one of the studies has no enhancing tumour reported (no T1c)
    rano_note: str = "suggestion from the bidimensional product only; not a RANO assessment"


class Structured(BaseModel):
    location: Location
    enhancement: Enhancement
    comparison: Comparison | None = None


def enhancement(m: Measurements) -> Enhancement:
    """The pattern as the claim rules decide it (claims.py R2-R4; R8: "not_assessed" without T1c)."""
    if not reported(m, "ET"):
        return Enhancement(pattern="not_assessed", enhancing_ml=0.0, necrotic_ml=0.0, ratio=None)
    et = label_volume(m, ENHANCING_LABEL) or region(m, "ET")
    nec = label_volume(m, NECROTIC_LABEL)
    ratio = et / nec if nec >= DETECTION_MIN_ML else None
    return Enhancement(pattern=assess(m).pattern, enhancing_ml=et, necrotic_ml=nec, ratio=ratio)


def _pct(now: float, before: float) -> float | None:
    return (now - before) / before * 100.0 if before > 0 else None


def rano_suggestion(current: Measurements, prior: Measurements) -> tuple[Rano, float | None]:
    """CR: no enhancing tumour now (where there was some); PR: product change <= -50 %; PD: >= +25 %
    (or a new enhancing lesion from none); SD otherwise."""
    change = _pct(current.bidimensional_product_mm2, prior.bidimensional_product_mm2)
    if region(current, "ET") < ENHANCEMENT_MIN_ML and region(prior, "ET") >= ENHANCEMENT_MIN_ML:
        return "CR", change
    if change is None:
        return ("PD" if current.bidimensional_product_mm2 > 0 else "SD"), None
    if change >= PD_MIN_CHANGE_PCT:
        return "PD", change
    if change <= PR_MAX_CHANGE_PCT:
        return "PR", change
    return "SD", change


def compare(current: Measurements, prior: Measurements, prior_report_id: str, prior_study_uid: str, prior_date: str) -> Comparison:
    """The change in every region both studies report; a RANO-style suggestion only when both report the
    enhancing tumour (a post-contrast T1 in each)."""
    both = [k for k in ("WT", "TC", "ET") if reported(current, k) and reported(prior, k)]
    if "ET" in both:
        category, change = rano_suggestion(current, prior)
    else:
        category, change = None, _pct(current.bidimensional_product_mm2, prior.bidimensional_product_mm2)
    return Comparison(
        prior_report_id=prior_report_id,
        prior_study_instance_uid=prior_study_uid,
        prior_study_date=prior_date,
        volume_change_ml={k: region(current, k) - region(prior, k) for k in both},
        volume_change_pct={k: _pct(region(current, k), region(prior, k)) for k in both},
        prior_bidimensional_product_mm2=prior.bidimensional_product_mm2,
        bidimensional_product_mm2=current.bidimensional_product_mm2,
        bidimensional_change_pct=change,
        rano_suggestion=category,
    )


def structured_fields(m: Measurements, comparison: Comparison | None = None) -> Structured:
    return Structured(location=locate(m), enhancement=enhancement(m), comparison=comparison)
