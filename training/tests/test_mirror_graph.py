"""Test-time mirroring and softmax moved into the ONNX graph (glioscope_training.mirror_graph)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from glioscope_common.dev.testing import require_module

onnx = require_module("onnx")
ort = require_module("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from glioscope_training.mirror_graph import (  # noqa: E402
    convert,
    mirror_in_graph,
    reference_probabilities,
    rename_triton_output,
)

REPO = Path(__file__).resolve().parents[2]
SHAPE = [4, 10, 8, 6]  # channels, X, Y, Z: unequal sides, so that a wrong axis shows


def tiny_network(io_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """Conv 3x3x3 (random, asymmetric kernels) -> LeakyRelu -> Conv 1x1x1 to 4 logits: mirroring
    its input does not mirror its output, as with a real network."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.normal(size=(6, 4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 6, 1, 1, 1)).astype(np.float32), "w2")
    nodes = []
    source = "image"
    if io_type == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["image"], ["image_float"], to=TensorProto.FLOAT))
        source = "image_float"
    nodes += [
        helper.make_node("Conv", [source, "w1"], ["hidden"], pads=[1] * 6),
        helper.make_node("LeakyRelu", ["hidden"], ["activated"], alpha=0.1),
        helper.make_node("Conv", ["activated", "w2"], ["logits" if io_type == TensorProto.FLOAT else "logits_float"]),
    ]
    if io_type == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["logits_float"], ["logits"], to=TensorProto.FLOAT16))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", io_type, ["batch", *SHAPE])],
        [helper.make_tensor_value_info("logits", io_type, ["batch", *SHAPE])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("axes", [[0], [2], [0, 1]])
def test_the_graph_gives_the_average_of_the_separate_passes(axes):
    plain = tiny_network()
    fused = session(mirror_in_graph(plain, axes))
    image = np.random.default_rng(1).normal(size=(2, *SHAPE)).astype(np.float32)
    got = fused.run(None, {"image": image})[0]
    expected = reference_probabilities(session(plain), image, axes)
    assert got.shape == (2, *SHAPE[0:1], *SHAPE[1:]) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    # Without mirroring the network's output differs: the test would see a missing pass.
    single = reference_probabilities(session(plain), image, [])
    assert np.abs(single - expected).max() > 1e-2


def test_mirrored_along_one_axis_the_output_is_mirror_symmetric():
    fused = session(mirror_in_graph(tiny_network(), [0]))
    image = np.random.default_rng(2).normal(size=(1, *SHAPE)).astype(np.float32)
    direct = fused.run(None, {"image": image})[0]
    mirrored = fused.run(None, {"image": np.ascontiguousarray(np.flip(image, 2))})[0]
    np.testing.assert_allclose(np.flip(mirrored, 2), direct, atol=1e-6)


def test_float16_io_models_keep_their_tensor_types():
    plain = tiny_network(TensorProto.FLOAT16)
    fused_model = mirror_in_graph(plain, [0])
    assert fused_model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert fused_model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    image = np.random.default_rng(3).normal(size=(1, *SHAPE)).astype(np.float16)
    got = session(fused_model).run(None, {"image": image})[0]
    assert got.dtype == np.float16
    expected = reference_probabilities(session(plain), image, [0])
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=2e-3)


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        mirror_in_graph(tiny_network(), [0, 0])
    with pytest.raises(ValueError, match="distinct"):
        mirror_in_graph(tiny_network(), [3])
    with pytest.raises(ValueError, match="distinct"):
        mirror_in_graph(tiny_network(), [])
    model = tiny_network()
    then = helper.make_graph([helper.make_node("Identity", ["hidden"], ["h2"])], "then", [], [
        helper.make_tensor_value_info("h2", TensorProto.FLOAT, None)])
    model.graph.node.append(helper.make_node("If", ["cond"], ["out"], then_branch=then, else_branch=then))
    with pytest.raises(ValueError, match="subgraph"):
        mirror_in_graph(model, [0])


def test_rename_triton_output_touches_the_output_block_only():
    text = (REPO / "model_repository" / "glioscope_unet" / "configs" / "cpu.pbtxt").read_text()
    renamed = rename_triton_output(text, "probabilities", "scores")
    assert 'name: "scores"' in renamed and 'name: "image"' in renamed
    assert renamed.replace('name: "scores"', 'name: "probabilities"') == text
    with pytest.raises(ValueError, match="not found"):
        rename_triton_output(text, "image", "x")  # an input, not an output


def test_convert_rewrites_a_model_folder_in_place(tmp_path):
    folder = tmp_path / "tiny_unet"
    (folder / "1").mkdir(parents=True)
    (folder / "configs").mkdir()
    onnx.save(tiny_network(), str(folder / "1" / "model.onnx"))
    config = (
        'name: "tiny_unet"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 2\n'
        'input [ { name: "image" data_type: TYPE_FP32 dims: [ 4, 10, 8, 6 ] } ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 4, 10, 8, 6 ] } ]\n'
    )
    (folder / "config.pbtxt").write_text(config)
    (folder / "configs" / "cpu.pbtxt").write_text(config)
    source = json.loads((REPO / "model_repository" / "glioscope_unet" / "1" / "metadata.json").read_text())
    meta = {**source, "name": "tiny_unet", "output_name": "logits", "output_type": "softmax", "flip_axes": [0],
            "graph_flip_axes": [], "patch_size": SHAPE[1:]}
    (folder / "metadata.json").write_text(json.dumps(meta))
    kept = tmp_path / "kept.onnx"
    shutil.copy(folder / "1" / "model.onnx", kept)

    new = convert(folder, version="9.9.9")

    assert new["output_type"] == "probabilities" and new["output_name"] == "probabilities"
    assert new["flip_axes"] == [] and new["graph_flip_axes"] == [0]
    assert new["version"] == new["algorithm_version"] == "9.9.9"
    assert json.loads((folder / "metadata.json").read_text()) == new
    for path in (folder / "config.pbtxt", folder / "configs" / "cpu.pbtxt"):
        assert 'output [ { name: "probabilities"' in path.read_text()
    import glioscope_common.model_metadata as mm
    assert mm.ModelMetadata.load(folder).graph_flip_axes == [0]
    image = np.random.default_rng(4).normal(size=(1, *SHAPE)).astype(np.float32)
    rewritten = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(str(kept), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(rewritten.run(None, {"image": image})[0],
                               reference_probabilities(plain, image, [0]), atol=1e-6)
    # A second run finds nothing to do and changes nothing.
    with pytest.raises(SystemExit, match="already done"):
        convert(folder)
    assert json.loads((folder / "metadata.json").read_text()) == new
