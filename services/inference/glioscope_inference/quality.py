"""A per-case quality estimate from the model's own probabilities: how much of its answer it is sure of.

For each region (WT, TC, ET) the soft Dice between the region's probability map and the region the
labels take (argmax) over the brain: 2 Σ p·m / (Σ p + Σ m). A confident segmentation scores near 1; a
region drawn where the model hesitates (probabilities near 0.5 over much of it, or mass spread outside
it) scores lower. It needs no second model and no extra pass. The case's estimate is the lowest of the
regions the model drew (`overall`). On the 10 real BraTS 2018 cases, each segmented by a v0.4.0 fold model
that had not seen it (5-fold cross-validation), it ranks the cases by their mean Dice with Spearman 0.55
(WT 0.72, TC 0.89, ET 0.89); v0.3.1 gave 0.70 (its cases were never trained on). This is the "self-consistency" estimate
(e.g. Jungo & Reyes, "Assessing reliability and challenges of uncertainty estimations for medical image
segmentation", MICCAI 2019); whether it ranks real cases by their Dice is measured by
bench/eval_real_cases.py (docs/model-card.md) and decides the threshold in QUALITY_REVIEW_BELOW.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glioscope_common.measurements import REGIONS, SegmentationQuality
from glioscope_common.model_metadata import ModelMetadata

__all__ = ["QUALITY_REVIEW_BELOW", "segmentation_quality"]

# The case's estimate under which it is flagged for careful review, for a model whose metadata names none
# (`quality_review_below`, chosen per model version on real cases: docs/model-card.md).
QUALITY_REVIEW_BELOW = 0.85


def segmentation_quality(probabilities: np.ndarray, labels: np.ndarray, brain: np.ndarray,
                         metadata: ModelMetadata, regions: Sequence[str] = tuple(REGIONS)) -> SegmentationQuality:
    """`probabilities`: [channels, X, Y, Z] (channel 0 background, channel c the label metadata.labels[c-1]);
    `labels`: the label values the argmax gives on the same grid; `brain`: where the model looked;
    `regions`: the regions reported (the others get no estimate and do not count in `overall`)."""
    channel_of = {label.value: c + 1 for c, label in enumerate(metadata.labels)}
    scores: dict[str, float | None] = {}
    inside = np.flatnonzero(brain.ravel())
    flat_labels = labels.ravel()[inside]
    for region, values in REGIONS.items():
        if region not in regions:
            scores[region] = None
            continue
        channels = [channel_of[v] for v in values if v in channel_of]
        p = np.zeros(inside.size, dtype=np.float64)
        for c in channels:
            p += probabilities[c].ravel()[inside]
        m = np.isin(flat_labels, values)
        denominator = float(p.sum() + m.sum())
        scores[region] = None if denominator < 1.0 else round(2.0 * float(p[m].sum()) / denominator, 4)
    drawn = [v for v in scores.values() if v is not None]
    overall = min(drawn) if drawn else None
    below = metadata.quality_review_below if metadata.quality_review_below is not None else QUALITY_REVIEW_BELOW
    return SegmentationQuality(
        wt=scores["WT"], tc=scores["TC"], et=scores["ET"], overall=overall,
        review=overall is not None and overall < below, review_below=below,
    )
