"""The rule of which regions a set of sequences supports (glioscope_common.sequence_regions)."""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.errors import UnprocessableInput
from glioscope_common.measurements import WHOLE_TUMOUR_LABEL, Measurements
from glioscope_common.model_metadata import CodedConcept, LabelInfo
from glioscope_common.sequence_regions import (
    delivered_labels,
    plan_sequences,
    refusal_reason,
    restrict_labels,
)

ALL = ["WT", "TC", "ET"]


@pytest.mark.parametrize(
    ("present", "regions", "reference"),
    [
        (("T1", "T1c", "T2", "FLAIR"), ALL, "T1c"),
        (("T1c", "FLAIR"), ALL, "T1c"),
        (("T1", "T1c", "T2"), ALL, "T1c"),  # no FLAIR: T2 shows the whole tumour
        (("T1c", "T2", "FLAIR"), ALL, "T1c"),
        (("T1", "T2", "FLAIR"), ["WT"], "FLAIR"),
        (("FLAIR",), ["WT"], "FLAIR"),
        (("T1", "FLAIR"), ["WT"], "FLAIR"),
        (("T1c",), ["TC", "ET"], "T1c"),
        (("T1", "T1c"), ["TC", "ET"], "T1c"),
    ],
)
def test_regions_follow_the_sequences(present, regions, reference):
    plan = plan_sequences(present)
    assert list(plan.regions) == regions
    assert set(plan.not_reported) == set(ALL) - set(regions)
    assert plan.reference == reference
    assert plan.used == tuple(r for r in ("T1", "T1c", "T2", "FLAIR") if r in present)
    assert plan.complete == (len(present) == 4)


@pytest.mark.parametrize("present", [(), ("T1",), ("T2",), ("T1", "T2")])
def test_without_t1c_and_flair_a_study_is_refused_naming_what_it_needs(present):
    reason = refusal_reason(present)
    assert reason is not None and "T1c" in reason and "FLAIR" in reason
    with pytest.raises(UnprocessableInput, match="needs at least a post-contrast T1"):
        plan_sequences(present)


def test_the_summary_says_what_was_used_and_why_regions_are_missing():
    assert plan_sequences(["T1", "T1c", "T2", "FLAIR"]).summary() == (
        "Sequences used: T1, T1c, T2, FLAIR; not available: none; all regions reported.")
    no_t1c = plan_sequences(["T1", "T2", "FLAIR"]).summary()
    assert no_t1c.startswith("Sequences used: T1, T2, FLAIR; not available: T1c; regions not reported: "
                             "tumour core (TC) and enhancing tumour (ET), because there is no post-contrast T1 (T1c)")
    t1c_only = plan_sequences(["T1c"]).summary()
    assert "not available: T1, T2, FLAIR" in t1c_only
    assert "whole tumour (WT), because there is neither FLAIR nor T2" in t1c_only


def test_labels_are_restricted_to_what_is_reported():
    labels = np.array([0, 1, 2, 3, 2, 0], dtype=np.uint8)
    np.testing.assert_array_equal(restrict_labels(labels, plan_sequences(["T1c", "FLAIR"])), labels)
    np.testing.assert_array_equal(restrict_labels(labels, plan_sequences(["FLAIR"])),
                                  [0, WHOLE_TUMOUR_LABEL, WHOLE_TUMOUR_LABEL, WHOLE_TUMOUR_LABEL, WHOLE_TUMOUR_LABEL, 0])
    np.testing.assert_array_equal(restrict_labels(labels, plan_sequences(["T1c"])), [0, 1, 0, 3, 0, 0])


def test_the_delivered_segments_claim_only_what_is_reported():
    def label(value: int, name: str) -> LabelInfo:
        concept = CodedConcept(value="49755003", meaning="Morphologically Altered Structure")
        return LabelInfo(value=value, name=name, category=concept, type=concept, color_rgb=(1, 2, 3))

    model = [label(1, "Necrotic core"), label(2, "Oedema"), label(3, "Enhancing tumour")]
    assert delivered_labels(model, plan_sequences(["T1", "T1c", "T2", "FLAIR"])) == model
    assert [i.value for i in delivered_labels(model, plan_sequences(["T1c"]))] == [1, 3]
    whole = delivered_labels(model, plan_sequences(["T2", "FLAIR"]))
    assert [(i.value, i.type.meaning, i.category.value) for i in whole] == [(WHOLE_TUMOUR_LABEL, "Neoplasm", "49755003")]


def test_measurements_stored_before_the_sequence_fields_read_as_a_complete_study():
    old = Measurements.model_validate({
        "label_volumes": [], "region_volumes_ml": {"WT": 1.0, "TC": 0.5, "ET": 0.2},
        "max_axial_diameter_mm": 10, "perpendicular_diameter_mm": 5, "bidimensional_product_mm2": 50,
    })
    assert old.sequences_used == ["T1", "T1c", "T2", "FLAIR"] and old.sequences_missing == []
    assert old.regions_reported == ALL and old.regions_not_reported == {}
