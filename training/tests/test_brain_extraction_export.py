"""The numpy copy of deepbet's pipeline (glioscope_training.brain_extraction_export): the pieces
that must match deepbet/torch exactly, on small arrays. No deepbet, no weights needed."""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.dev.testing import require_module
from glioscope_training.brain_extraction_export import (
    bbox_with_margin,
    decompose_instance_norm,
    extract_brain,
    fill_holes,
    largest_component,
    nearest_exact_index,
    normalize,
    resize_nearest_exact,
)
from scipy import ndimage


@pytest.mark.parametrize("n_in,n_out", [(26, 128), (26, 256), (240, 128), (185, 256), (256, 185), (7, 3)])
def test_nearest_exact_matches_torch(n_in: int, n_out: int) -> None:
    torch = require_module("torch")
    x = torch.arange(n_in, dtype=torch.float32)[None, None, :, None, None].expand(1, 1, n_in, 2, 2)
    ref = torch.nn.functional.interpolate(x.contiguous(), (n_out, 2, 2), mode="nearest-exact")[0, 0, :, 0, 0]
    assert np.array_equal(nearest_exact_index(n_in, n_out), ref.numpy().astype(np.int64))


def test_resize_nearest_exact_per_axis() -> None:
    x = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    y = resize_nearest_exact(x, (8, 6, 3))
    ix, iz = nearest_exact_index(5, 8), nearest_exact_index(7, 3)
    assert y.shape == (8, 6, 3)
    assert np.array_equal(y, x[ix][:, :, iz])


def test_normalize_is_deepbets_formula() -> None:
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 100.0, (40, 30, 20)).astype(np.float32)
    low, high = np.quantile(x, [0.005, 0.995])
    ref = np.clip((x.astype(np.float64) - low) / (high - low), 0, 1)
    ref = 0.226 * (ref - ref.mean()) / ref.std(ddof=1) + 0.449
    assert np.abs(normalize(x, float(low), float(high)) - ref).max() < 1e-5


def test_fill_holes_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    mask = ndimage.binary_opening(rng.random((30, 28, 26)) > 0.35)
    assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_largest_component_is_26_connected() -> None:
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = True  # diagonal chain: one 26-connected component
    mask[7:9, 7, 7] = True  # 2 voxels, separate
    kept = largest_component(mask)
    assert kept[1, 1, 1] and kept[3, 3, 3] and not kept[7, 7, 7]


def test_bbox_scaled_with_margin() -> None:
    small = np.zeros((128, 128, 128), dtype=np.float32)
    small[32:96, 40:88, 10:100] = 1
    box = bbox_with_margin(small, (256, 224, 26))
    # x: centre 64 * 2 = 128, size 64 * 2 * 1.2 = 153.6 -> 154: [51, 205)
    assert box[0] == slice(51, 205, 1)
    # z: planes 10..99, scale 26/128; clipped to the image
    assert box[2].start >= 0 and box[2].stop <= 26


def test_decomposed_instance_norm_is_exact() -> None:
    onnx = require_module("onnx")
    ort = require_module("onnxruntime")
    from onnx import TensorProto, helper

    c = 3
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, "a", "b", "c"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, "a", "b", "c"])],
        [helper.make_tensor("s", TensorProto.FLOAT, [c], [1.0, 2.0, 0.5]),
         helper.make_tensor("b", TensorProto.FLOAT, [c], [0.0, 1.0, -1.0])],
    )
    model = decompose_instance_norm(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.checker.check_model(model)
    x = (np.random.default_rng(2).standard_normal((1, c, 32, 24, 16)) * 3 + 50).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean((2, 3, 4), keepdims=True)) / np.sqrt(x64.var((2, 3, 4), keepdims=True) + 1e-5)
    ref = ref * np.array([1.0, 2.0, 0.5])[None, :, None, None, None] + np.array([0.0, 1.0, -1.0])[None, :, None, None, None]
    assert np.abs(got - ref).max() < 1e-4


def test_extract_brain_with_stand_in_networks_reorients_back() -> None:
    """A ball in a noisy box, in LPS order, with 'networks' that threshold their input: the mask
    comes back on the input grid and covers the ball."""
    shape = (64, 60, 20)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array([30, 32, 10], dtype=np.float32)[:, None, None, None]
    scale = np.array([1.0, 1.0, 3.0], dtype=np.float32)[:, None, None, None]
    ball = (((grid - centre) * scale) ** 2).sum(0) < 20**2
    rng = np.random.default_rng(3)
    image = np.where(ball, 1000.0, 50.0).astype(np.float32) + rng.normal(0, 5, shape).astype(np.float32)
    affine = np.diag([-1.0, -1.0, 3.0, 1.0])  # L, P, S: flipped on two axes

    def threshold(x: np.ndarray) -> np.ndarray:
        return (x > 0.6).astype(np.float32)

    res = extract_brain(image, affine, threshold, threshold, fine_shape=(64, 64, 64))
    assert res.mask.shape == shape
    dice = 2 * (res.mask & ball).sum() / (res.mask.sum() + ball.sum())
    assert dice > 0.95
