"""Dice and 95th-percentile Hausdorff distance (scipy distance transforms), BraTS regions."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    s = pred.sum() + ref.sum()
    if s == 0:
        return 1.0
    return float(2.0 * np.logical_and(pred, ref).sum() / s)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> float:
    """Symmetric 95th-percentile surface distance in mm.

    0.0 when both masks are empty; inf when exactly one is empty (BraTS reports 373.13 there).
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return float("inf")
    # crop to the joint bounding box (+margin) for speed
    idx = np.argwhere(pred | ref)
    lo = np.maximum(idx.min(0) - 2, 0)
    hi = idx.max(0) + 3
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    pred, ref = pred[sl], ref[sl]
    sp, sr = _surface(pred), _surface(ref)
    dt_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)
    dt_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    d = np.concatenate([dt_ref[sp], dt_pred[sr]])
    return float(np.percentile(d, 95))


def region_scores(pred: np.ndarray, ref: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> dict[str, dict[str, float]]:
    out = {}
    for name, labs in REGIONS.items():
        p, r = np.isin(pred, labs), np.isin(ref, labs)
        out[name] = {"dice": dice(p, r), "hd95": hd95(p, r, spacing)}
    return out
