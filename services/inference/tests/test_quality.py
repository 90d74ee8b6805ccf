"""The per-case quality estimate: soft Dice of each region's probabilities with its labels."""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_inference.postprocess import probabilities_to_labels
from glioscope_inference.quality import QUALITY_REVIEW_BELOW, segmentation_quality


def _probabilities(tumour: float) -> np.ndarray:
    """A 20-voxel cube whose voxels are oedema with probability `tumour` (background otherwise) in a
    30-voxel brain; a 6-voxel enhancing core inside it, equally sure."""
    p = np.zeros((4, 30, 30, 30), np.float32)
    p[0] = 1.0
    box = (slice(5, 25),) * 3
    p[0][box], p[2][box] = 1 - tumour, tumour
    core = (slice(12, 18),) * 3
    p[2][core], p[3][core] = 0.0, tumour
    return p


def test_a_confident_model_scores_one(tiny_metadata) -> None:  # type: ignore[no-untyped-def]
    p = _probabilities(1.0)
    q = segmentation_quality(p, probabilities_to_labels(p, tiny_metadata), np.ones((30, 30, 30), bool), tiny_metadata)
    assert (q.wt, q.tc, q.et, q.overall) == (1.0, 1.0, 1.0, 1.0) and q.review is False


def test_a_hesitant_model_scores_lower_and_is_flagged(tiny_metadata) -> None:  # type: ignore[no-untyped-def]
    p = _probabilities(0.55)  # argmax still says tumour, but barely
    q = segmentation_quality(p, probabilities_to_labels(p, tiny_metadata), np.ones((30, 30, 30), bool), tiny_metadata)
    assert q.wt == pytest.approx(2 * 0.55 / 1.55, abs=1e-3) and q.overall == min(q.wt, q.tc, q.et)
    assert q.overall < QUALITY_REVIEW_BELOW and q.review
    assert q.review_below == QUALITY_REVIEW_BELOW


def test_no_region_no_score(tiny_metadata) -> None:  # type: ignore[no-untyped-def]
    p = np.zeros((4, 10, 10, 10), np.float32)
    p[0] = 1.0
    q = segmentation_quality(p, probabilities_to_labels(p, tiny_metadata), np.ones((10, 10, 10), bool), tiny_metadata)
    assert (q.wt, q.tc, q.et, q.overall, q.review) == (None, None, None, None, False)


def test_the_review_threshold_is_the_model_versions_own(tiny_metadata) -> None:  # type: ignore[no-untyped-def]
    p = _probabilities(0.9)
    labels = probabilities_to_labels(p, tiny_metadata)
    brain = np.ones((30, 30, 30), bool)
    default = segmentation_quality(p, labels, brain, tiny_metadata)
    strict = segmentation_quality(p, labels, brain, tiny_metadata.model_copy(update={"quality_review_below": 0.99}))
    assert default.overall == strict.overall and default.overall > QUALITY_REVIEW_BELOW
    assert default.review is False and default.review_below == QUALITY_REVIEW_BELOW
    assert strict.review is True and strict.review_below == 0.99


def test_the_shipped_versions_carry_their_threshold() -> None:
    from glioscope_common.model_metadata import model_versions

    from .conftest import REPO

    thresholds = {v.metadata.version: v.metadata.quality_review_below for v in model_versions(REPO / "model_repository" / "glioscope_unet")}
    assert thresholds["0.3.1"] == 0.85 and thresholds["0.4.0"] == 0.88  # docs/model-card.md, per version
