"""Enhancement pattern and the RANO-style suggestion (pure functions). The lobe lookup is tested in
services/common/tests/test_brain_atlas.py, the claim rules in test_reporting_draft.py."""

from __future__ import annotations

import pytest

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.analysis import compare, enhancement, rano_suggestion


def _m(necrotic: float, enhancing: float, product: float, oedema: float = 10.0) -> Measurements:
    return Measurements(
        label_volumes=[
            {"label": 1, "name": "necrotic core", "volume_ml": necrotic},
            {"label": 2, "name": "peritumoural oedema", "volume_ml": oedema},
            {"label": 3, "name": "enhancing tumour", "volume_ml": enhancing},
        ],
        region_volumes_ml={"WT": necrotic + oedema + enhancing, "TC": necrotic + enhancing, "ET": enhancing},
        max_axial_diameter_mm=10, perpendicular_diameter_mm=10, bidimensional_product_mm2=product,
        hemisphere="left", tumour_detected=True,
    )


def test_enhancement_pattern() -> None:
    assert enhancement(_m(0.0, 0.05, 100)).pattern == "none"
    assert enhancement(_m(8.9, 0.4, 100)).pattern == "none"  # under R2's 0.5 mL
    assert enhancement(_m(5.0, 10.0, 100)).pattern == "rim"  # ratio 2
    assert enhancement(_m(2.0, 6.0, 100)).pattern == "rim"  # ratio 3 (boundary)
    assert enhancement(_m(1.0, 10.0, 100)).pattern == "solid"  # ratio 10
    assert enhancement(_m(0.0, 10.0, 100)).pattern == "solid"  # no necrosis
    assert enhancement(_m(0.0, 10.0, 100)).ratio is None


@pytest.mark.parametrize(
    ("now", "before", "now_et", "category"),
    [
        (1250.0, 1000.0, 5.0, "PD"),  # +25 % exactly
        (1249.0, 1000.0, 5.0, "SD"),
        (500.0, 1000.0, 5.0, "PR"),  # -50 % exactly
        (501.0, 1000.0, 5.0, "SD"),
        (400.0, 1000.0, 0.0, "CR"),  # no enhancing tumour left
        (100.0, 0.0, 5.0, "PD"),  # a new lesion where there was none
    ],
)
def test_rano_suggestion(now, before, now_et, category) -> None:  # type: ignore[no-untyped-def]
    assert rano_suggestion(_m(2.0, now_et, now), _m(2.0, 5.0 if before else 0.0, before))[0] == category


def test_compare_changes() -> None:
    c = compare(_m(2.0, 8.0, 1500.0), _m(2.0, 4.0, 1000.0), "r0", "1.2.3", "20240101")
    assert c.volume_change_ml == {"WT": pytest.approx(4.0), "TC": pytest.approx(4.0), "ET": pytest.approx(4.0)}
    assert c.volume_change_pct["ET"] == pytest.approx(100.0)
    assert c.bidimensional_change_pct == pytest.approx(50.0) and c.rano_suggestion == "PD"
    assert "suggestion" in c.rano_note
