"""The committed model folder satisfies the model contract (metadata, Triton configs, ONNX)."""

import json
import re
from pathlib import Path

import pytest

from glioscope_common.testing import require_module

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "model_repository" / "glioscope_unet"


def test_metadata_valid_for_model_metadata():
    import glioscope_common.model_metadata as mm
    meta = mm.ModelMetadata.load(MODEL_DIR)
    assert meta.channels == ["T1", "T1c", "T2", "FLAIR"]
    assert tuple(meta.spacing_mm) == (1.0, 1.0, 1.0)
    assert meta.orientation == "RAS" and meta.output_type == "probabilities"
    assert meta.graph_flip_axes == [0] and meta.flip_axes == []  # left-right mirroring inside the graph
    assert meta.normalisation.method == "zscore"
    assert [label.value for label in meta.labels] == [1, 2, 3]
    assert [label.type.value for label in meta.labels] == ["6574001", "79654002", "108369006"]
    assert all(label.category.value == "49755003" for label in meta.labels)
    assert "research use only" in meta.intended_use
    assert (MODEL_DIR / meta.onnx_file).exists()


def _dims(text: str, name: str) -> list[int]:
    block = re.search(r'name:\s*"%s".*?dims:\s*\[([^\]]*)\]' % name, text, re.S)
    assert block, name
    return [int(x) for x in block.group(1).split(",")]


@pytest.mark.parametrize("config, kind", [("config.pbtxt", "KIND_GPU"), ("configs/cpu.pbtxt", "KIND_CPU")])
def test_triton_configs_match_metadata(config, kind):
    meta = json.loads((MODEL_DIR / "metadata.json").read_text())
    text = (MODEL_DIR / config).read_text()
    assert 'platform: "onnxruntime_onnx"' in text
    assert f"kind: {kind}" in text
    assert "dynamic_batching" in text and re.search(r"max_batch_size:\s*[1-9]", text)
    patch = list(meta["patch_size"])
    assert _dims(text, "image") == [4] + patch
    assert _dims(text, meta["output_name"]) == [4] + patch
    warmup = re.search(r'model_warmup.*?key:\s*"image".*?data_type:\s*(\w+).*?dims:\s*\[([^\]]*)\]', text, re.S)
    assert warmup, "a model_warmup with a zero patch"
    assert [int(x) for x in warmup.group(2).split(",")] == [4] + patch
    assert warmup.group(1) == re.search(r'name:\s*"image"\s*data_type:\s*(\w+)', text).group(1)


def test_onnx_file_contract():
    onnx_path = MODEL_DIR / "1" / "model.onnx"
    assert onnx_path.stat().st_size <= 30e6
    onnx = require_module("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) <= 17
    meta = json.loads((MODEL_DIR / "metadata.json").read_text())
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == meta["input_name"] == "image" and out.name == meta["output_name"] == "probabilities"
    dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(inp)[1:] == [4] + list(meta["patch_size"]) and isinstance(dims(inp)[0], str)
    assert dims(out)[1:] == [4] + list(meta["patch_size"])


@pytest.mark.parametrize("config", ["config.pbtxt", "configs/cpu.pbtxt"])
def test_triton_configs_declare_the_onnx_tensor_types(config):
    onnx = require_module("onnx")
    model = onnx.load(str(MODEL_DIR / "1" / "model.onnx"), load_external_data=False)
    triton_type = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
    text = (MODEL_DIR / config).read_text()
    for tensor in (*model.graph.input, *model.graph.output):
        block = re.search(r'name:\s*"%s"\s*data_type:\s*(\w+)' % tensor.name, text)
        assert block and block.group(1) == triton_type[tensor.type.tensor_type.elem_type], tensor.name


def test_the_shipped_graph_mirrors_inside():
    """metadata graph_flip_axes [0]: the file's output for a patch mirrored left-right is its output
    mirrored back, and probabilities sum to 1 (one 160³ patch, twice)."""
    ort = require_module("onnxruntime")
    meta = json.loads((MODEL_DIR / "metadata.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(MODEL_DIR / meta["onnx_file"]), options, providers=["CPUExecutionProvider"])
    import numpy as np  # noqa: PLC0415

    image = np.random.default_rng(0).normal(size=(1, 4, *meta["patch_size"])).astype(np.float32)
    direct = session.run(None, {"image": image})[0]
    mirrored = session.run(None, {"image": np.ascontiguousarray(image[:, :, ::-1])})[0]
    np.testing.assert_allclose(mirrored[:, :, ::-1], direct, atol=1e-5)
    np.testing.assert_allclose(direct.sum(axis=1), 1.0, atol=1e-5)
    assert direct.min() >= 0.0
