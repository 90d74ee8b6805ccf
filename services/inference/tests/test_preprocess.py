from __future__ import annotations

import time

import numpy as np
import pytest

from glioscope_common.model_metadata import Normalisation
from glioscope_common.volume import Volume
from glioscope_inference.preprocess import normalise, reference_grid, resample, should_coregister
from glioscope_inference.registration import coregister_rigid


def test_reference_grid_covers_extent_axis_aligned():
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])  # LPS-like NIfTI (BraTS style)
    affine[:3, 3] = [10.0, 20.0, -5.0]
    vol = Volume(np.zeros((11, 21, 6), np.float32), affine)
    grid, shape = reference_grid(vol, 1.0)
    assert np.allclose(grid[:3, :3], np.eye(3))
    assert np.allclose(grid[:3, 3], [0.0, 0.0, -5.0])
    assert shape == (11, 21, 11)


def test_resample_identity_is_exact():
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    data = rng.normal(size=(12, 10, 8)).astype(np.float32)
    vol = Volume(data, affine)
    for order in (0, 1, 3):
        out = resample(vol, affine, vol.shape, order=order)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, data)
    # a pure integer shift of the grid also reproduces the voxels exactly (linear interpolation)
    shifted = affine.copy()
    shifted[:3, 3] = [2.0, 1.0, 0.0]
    out = resample(vol, shifted, (10, 9, 8), order=1)
    np.testing.assert_allclose(out, data[2:12, 1:10, :], atol=1e-6)


def test_resample_flip_and_labels_keep_dtype():
    data = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    affine = np.diag([-2.0, 1.0, 1.0, 1.0])
    affine[0, 3] = 6.0  # x = 6 - 2 i
    vol = Volume(data, affine)
    grid, shape = reference_grid(vol, (2.0, 1.0, 1.0))
    out = resample(vol, grid, shape, order=0)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, data[::-1])


def _blob_phantom(affine: np.ndarray, shape, shift=np.zeros(3)) -> np.ndarray:
    """Anatomy f(world + shift): asymmetric Gaussian blobs, sampled on (affine, shape)."""
    ijk = np.indices(shape, dtype=float).reshape(3, -1).T
    world = ijk @ affine[:3, :3].T + affine[:3, 3] + shift
    blobs = [((0, 0, 0), 9.0, 1.0), ((7, -5, 3), 4.0, 1.5), ((-8, 6, -4), 3.0, 0.8), ((3, 9, 6), 3.5, 1.2)]
    out = np.zeros(len(world))
    for centre, sigma, amp in blobs:
        out += amp * np.exp(-0.5 * (np.linalg.norm(world - np.array(centre), axis=1) / sigma) ** 2)
    return (100 * out).reshape(shape).astype(np.float32)


def test_coregister_rigid_recovers_known_shift():
    shape = (40, 48, 36)
    affine = np.eye(4)
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0
    fixed = Volume(_blob_phantom(affine, shape), affine)
    true_shift = np.array([3.0, -2.0, 1.5])
    # the patient moved: the moving image shows at header position y the anatomy at y + shift
    moving = Volume(_blob_phantom(affine, shape, true_shift), affine)
    start = time.perf_counter()
    transform = coregister_rigid(moving, fixed)
    elapsed = time.perf_counter() - start
    # T maps moving world -> fixed world: y -> y + shift
    probe = np.array([[0, 0, 0], [5, -5, 5], [-6, 4, -3]], dtype=float)
    mapped = probe @ transform[:3, :3].T + transform[:3, 3]
    error = np.linalg.norm(mapped - (probe + true_shift), axis=1)
    assert error.max() < 1.0, (transform, error)
    assert elapsed < 20


def test_coregister_identity_when_already_aligned():
    shape = (24, 24, 20)
    affine = np.eye(4)
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0
    vol = Volume(_blob_phantom(affine, shape), affine)
    transform = coregister_rigid(vol, vol)
    assert np.allclose(transform[:3, 3], 0, atol=0.5) and np.allclose(transform[:3, :3], np.eye(3), atol=0.02)


def test_should_coregister_rules():
    affine = np.eye(4)
    a = Volume(np.ones((10, 10, 10), np.float32), affine)
    other_grid = np.diag([2.0, 2.0, 2.0, 1.0])
    b = Volume(np.ones((5, 5, 5), np.float32), other_grid)
    assert should_coregister({"T1c": a, "T1": a})[0] is False
    assert should_coregister({"T1c": a, "T1": b})[0] is True
    same_for = {"T1c": "1.2.3", "T1": "1.2.3"}
    assert should_coregister({"T1c": a, "T1": b}, frame_of_reference_uids=same_for)[0] is False
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = 100.0
    c = Volume(np.ones((5, 5, 5), np.float32), far)
    assert should_coregister({"T1c": a, "T1": c}, frame_of_reference_uids=same_for)[0] is True
    assert should_coregister({"T1c": a, "T1": b}, frame_of_reference_uids={"T1c": "1", "T1": "2"})[0] is True


@pytest.mark.parametrize("mask_method", ["nonzero", "foreground"])
def test_normalise_zero_mean_unit_std_inside_mask(mask_method):
    rng = np.random.default_rng(1)
    shape = (30, 30, 30)
    brain = np.zeros(shape, bool)
    brain[5:25, 6:24, 4:26] = True
    channels = np.zeros((2,) + shape, np.float32)
    channels[0][brain] = rng.normal(300, 40, brain.sum())
    channels[1][brain] = rng.normal(50, 5, brain.sum())
    if mask_method == "foreground":
        channels += rng.uniform(0, 3, channels.shape).astype(np.float32)  # raw data: noisy air
    out, mask = normalise(channels, Normalisation(mask=mask_method, clip=5.0))
    assert out.dtype == np.float32
    assert abs(mask.sum() - brain.sum()) <= 0.01 * brain.sum()
    for c in range(2):
        values = out[c][mask]
        assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
        assert np.all(out[c][~mask] == 0)
    assert out.max() <= 5.0 and out.min() >= -5.0


def test_permutation_fast_path_matches_interpolation():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    data = rng.normal(size=(9, 7, 5)).astype(np.float32)
    affine = np.array([[0, -1.0, 0, 4.0], [1.0, 0, 0, -2.0], [0, 0, -1.0, 3.0], [0, 0, 0, 1]])
    vol = Volume(data, affine)
    grid, shape = reference_grid(vol, 1.0)
    grid = grid.copy()
    grid[:3, 3] -= 1.0  # one voxel beyond the edge on every axis: cval there
    shape = tuple(s + 2 for s in shape)
    fast = resample(vol, grid, shape, order=1, cval=-7.0)
    m = np.linalg.inv(affine) @ grid
    slow = ndimage.affine_transform(data, m[:3, :3], offset=m[:3, 3], output_shape=shape, order=1, cval=-7.0)
    np.testing.assert_allclose(fast, slow, atol=1e-6)
    assert fast[0].max() == -7.0 and fast[1:-1, 1:-1, 1:-1].min() > -7.0
