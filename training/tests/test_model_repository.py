"""The committed model folder satisfies the model contract (metadata, Triton configs, ONNX) in every
version folder (docs/model-versions.md)."""

import json
import re
from pathlib import Path

import pytest

from glioscope_common.dev.testing import require_module

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "model_repository" / "glioscope_unet"
# Triton version folder -> the metadata version it carries
VERSIONS = {"1": "0.3.1", "2": "0.4.0"}


def _metadata(folder: str) -> dict:
    return _metadata_at(MODEL_DIR / folder)


def test_every_version_folder_carries_its_metadata_and_model():
    import glioscope_common.model_metadata as mm
    versions = mm.model_versions(MODEL_DIR)
    assert {v.folder: v.metadata.version for v in versions} == VERSIONS
    assert not (MODEL_DIR / "metadata.json").exists()  # nothing at the root: each version says it all
    for v in versions:
        assert v.metadata.algorithm_version == v.metadata.version
        assert v.onnx_path == MODEL_DIR / v.folder / "model.onnx" and v.onnx_path.is_file()
    assert mm.ModelMetadata.load(MODEL_DIR).version == "0.4.0"  # the newest by default
    assert mm.ModelMetadata.load(MODEL_DIR, "0.3.1").onnx_file == "1/model.onnx"
    with pytest.raises(mm.UnknownModelVersion, match="available: 0.3.1, 0.4.0"):
        mm.ModelMetadata.load(MODEL_DIR, "9.9.9")


@pytest.mark.parametrize("version", sorted(VERSIONS.values()))
def test_metadata_valid_for_model_metadata(version):
    import glioscope_common.model_metadata as mm
    meta = mm.ModelMetadata.load(MODEL_DIR, version)
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


@pytest.mark.parametrize("folder", sorted(VERSIONS))
@pytest.mark.parametrize("config, kind", [("config.pbtxt", "KIND_GPU"), ("configs/cpu.pbtxt", "KIND_CPU")])
def test_triton_configs_match_metadata(config, kind, folder):
    meta = _metadata(folder)
    text = (MODEL_DIR / config).read_text()
    assert re.search(r"version_policy:\s*\{\s*all\s*:", text), "Triton loads every version folder"
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


@pytest.mark.parametrize("folder", sorted(VERSIONS))
def test_onnx_file_contract(folder):
    onnx_path = MODEL_DIR / folder / "model.onnx"
    assert onnx_path.stat().st_size <= 30e6
    onnx = require_module("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) <= 17
    meta = _metadata(folder)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == meta["input_name"] == "image" and out.name == meta["output_name"] == "probabilities"
    dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(inp)[1:] == [4] + list(meta["patch_size"]) and isinstance(dims(inp)[0], str)
    assert dims(out)[1:] == [4] + list(meta["patch_size"])


@pytest.mark.parametrize("folder", sorted(VERSIONS))
@pytest.mark.parametrize("config", ["config.pbtxt", "configs/cpu.pbtxt"])
def test_triton_configs_declare_the_onnx_tensor_types(config, folder):
    onnx = require_module("onnx")
    model = onnx.load(str(MODEL_DIR / folder / "model.onnx"), load_external_data=False)
    triton_type = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
    text = (MODEL_DIR / config).read_text()
    for tensor in (*model.graph.input, *model.graph.output):
        block = re.search(r'name:\s*"%s"\s*data_type:\s*(\w+)' % tensor.name, text)
        assert block and block.group(1) == triton_type[tensor.type.tensor_type.elem_type], tensor.name


@pytest.mark.parametrize("folder", sorted(VERSIONS))
def test_the_shipped_graph_mirrors_inside(folder):
    """metadata graph_flip_axes [0]: the file's output for a patch mirrored left-right is its output
    mirrored back, and probabilities sum to 1 (one 160³ patch, twice)."""
    ort = require_module("onnxruntime")
    meta = _metadata(folder)
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


def test_the_metadata_tool_writes_a_version_folder(tmp_path):
    """glioscope_training.metadata writes <model>/<n>/metadata.json, its ONNX file in the same folder."""
    import glioscope_common.model_metadata as mm
    from glioscope_training.metadata import main

    main(["--model", str(tmp_path), "--folder", "3", "--version", "0.5.0", "--extra", '{"per_case": [{"case": "a", "dice_WT": 0.9}]}'])
    meta = _metadata_at(tmp_path / "3")
    assert meta["onnx_file"] == "3/model.onnx" and meta["version"] == meta["algorithm_version"] == "0.5.0"
    (tmp_path / "3" / "model.onnx").write_bytes(b"")
    version = mm.resolve_model_version(tmp_path, "0.5.0")
    assert version.folder == "3" and version.metadata.accuracy["per_case"][0]["dice_WT"] == 0.9
    assert version.metadata.accuracy_summary() == {}  # the per-case table is not a summary figure


def _metadata_at(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())
