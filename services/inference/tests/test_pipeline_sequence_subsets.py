"""Studies with a subset of T1, T1c, T2, FLAIR: segmented with only the regions those sequences support
(glioscope_common.sequence_regions), in the label map, the SEG's segments and the measurements."""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.dicom.write import write_series
from glioscope_common.errors import UnprocessableInput
from glioscope_common.measurements import WHOLE_TUMOUR_LABEL
from glioscope_inference.dicom_seg import build_segmentation, read_segmentation
from glioscope_inference.pipeline import segment_study

# (sequences, reference grid, labels in the delivered map, regions reported). The tiny model labels oedema
# from the FLAIR and enhancing tumour from the T1c only, so T1 + T1c + T2 gives label 3 alone.
CASES = [
    (("T1c", "FLAIR"), "T1c", {2, 3}, ["WT", "TC", "ET"]),
    (("T1", "T1c", "T2"), "T1c", {3}, ["WT", "TC", "ET"]),
    (("T1", "T2", "FLAIR"), "FLAIR", {WHOLE_TUMOUR_LABEL}, ["WT"]),
    (("FLAIR",), "FLAIR", {WHOLE_TUMOUR_LABEL}, ["WT"]),
    (("T1c",), "T1c", {3}, ["TC", "ET"]),
]


@pytest.mark.parametrize(("roles", "reference", "labels", "regions"), CASES, ids=["+".join(c[0]) for c in CASES])
def test_a_subset_is_segmented_with_the_regions_it_supports(
    synthetic_study, tiny_metadata, tiny_backend, roles, reference, labels, regions
):
    volumes = {role: synthetic_study[role] for role in roles}
    result = segment_study(volumes, tiny_metadata, tiny_backend, coregister=False)

    assert result.reference.shape == synthetic_study[reference].shape
    assert np.array_equal(result.reference.affine, synthetic_study[reference].affine)
    assert set(np.unique(result.label_map)) - {0} == labels
    m = result.measurements
    assert m.sequences_used == [r for r in ("T1", "T1c", "T2", "FLAIR") if r in roles]
    assert m.sequences_missing == [r for r in ("T1", "T1c", "T2", "FLAIR") if r not in roles]
    assert m.regions_reported == regions
    assert sorted(m.region_volumes_ml) == sorted(regions)  # an unreported region has no volume at all
    assert set(m.regions_not_reported) == {"WT", "TC", "ET"} - set(regions)
    assert {v.label for v in m.label_volumes} == {info.value for info in result.delivered_metadata.labels}
    if m.quality is not None:
        for region in {"WT", "TC", "ET"} - set(regions):
            assert getattr(m.quality, region.lower()) is None
    if "TC" not in regions:
        assert [info.name for info in result.delivered_metadata.labels] == ["Whole tumour (not subdivided: no T1c)"]
        assert "T1c" in m.regions_not_reported["ET"]
    if "WT" not in regions:
        assert 2 not in {info.value for info in result.delivered_metadata.labels}
        assert "FLAIR nor T2" in m.regions_not_reported["WT"]


def test_the_seg_of_a_study_without_t1c_holds_one_whole_tumour_segment(synthetic_study, tiny_metadata, tiny_backend):
    flair = synthetic_study["FLAIR"]
    result = segment_study({"FLAIR": flair}, tiny_metadata, tiny_backend, coregister=False)
    sources = write_series(
        flair, study_instance_uid="1.2.826.0.1.3680043.8.498.1", series_instance_uid=None, series_number=4,
        series_description="FLAIR", patient_id="SUBSET", patient_name="Subset^Test", study_date="20260101",
        study_time="120000", frame_of_reference_uid="1.2.826.0.1.3680043.8.498.2",
    )
    seg = build_segmentation(result.label_map, sources, result.delivered_metadata)
    descriptions = [seg.get_segment_description(n) for n in seg.segment_numbers]
    assert [d.segment_label for d in descriptions] == ["Whole tumour (not subdivided: no T1c)"]
    assert descriptions[0].segmented_property_type.meaning == "Neoplasm"
    read_back = read_segmentation(seg, sources)
    np.testing.assert_array_equal(read_back, result.label_map)


@pytest.mark.parametrize("mask", ["nonzero", "foreground"])
def test_normalise_keeps_a_missing_sequence_exactly_zero_without_warnings(mask):
    import warnings

    from glioscope_common.model_metadata import Normalisation
    from glioscope_inference.preprocess import normalise

    rng = np.random.default_rng(3)
    channels = np.zeros((4, 20, 20, 20), dtype=np.float32)
    channels[3, 5:15, 5:15, 5:15] = rng.uniform(100, 400, (10, 10, 10))  # FLAIR only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero or a mean of nothing would raise here
        out, brain = normalise(channels, Normalisation(mask=mask))
    assert brain.any() and np.all(np.isfinite(out))
    assert not out[:3].any()  # T1, T1c, T2 absent: exactly 0 everywhere
    assert abs(float(out[3][brain].mean())) < 1e-3


def test_a_model_not_trained_for_missing_sequences_is_given_complete_studies_only(synthetic_study, tiny_metadata,
                                                                                   tiny_backend):
    complete_only = tiny_metadata.model_copy(update={"accepts_missing_sequences": False})
    volumes = {role: synthetic_study[role] for role in ("T1c", "FLAIR")}
    with pytest.raises(UnprocessableInput, match=r"needs all of T1, T1c, T2, FLAIR .*missing: T1, T2"):
        segment_study(volumes, complete_only, tiny_backend, coregister=False)
    result = segment_study(dict(synthetic_study), complete_only, tiny_backend, coregister=False)
    assert result.measurements.regions_reported == ["WT", "TC", "ET"]
