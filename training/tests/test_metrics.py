import math

import numpy as np

from glioscope_training.metrics import dice, hd95, region_scores


def test_dice_basic():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    assert dice(a, b) == 1.0
    a[2:4] = True
    assert dice(a, a) == 1.0
    assert dice(a, b) == 0.0
    b[3:5] = True
    assert math.isclose(dice(a, b), 0.5)


def test_hd95_shift_and_empty():
    a = np.zeros((40, 40, 40), bool)
    a[10:20, 10:20, 10:20] = True
    b = np.roll(a, 3, axis=0)
    assert hd95(a, a) == 0.0
    assert math.isclose(hd95(a, b), 3.0, abs_tol=1e-6)
    assert math.isclose(hd95(a, b, spacing=(2.0, 1.0, 1.0)), 6.0, abs_tol=1e-6)
    assert hd95(a, np.zeros_like(a)) == float("inf")
    assert hd95(np.zeros_like(a), np.zeros_like(a)) == 0.0


def test_region_scores():
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[5:15, 5:15, 5:15] = 2
    ref[8:12, 8:12, 8:12] = 3
    ref[9:11, 9:11, 9:11] = 1
    s = region_scores(ref, ref)
    assert all(v["dice"] == 1.0 and v["hd95"] == 0.0 for v in s.values())
    pred = ref.copy()
    pred[pred == 3] = 2
    s = region_scores(pred, ref)
    assert s["WT"]["dice"] == 1.0 and s["ET"]["dice"] == 0.0
