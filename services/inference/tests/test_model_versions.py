"""Model versions (issue 16, item 4): Triton serves every version folder of the tumour model, each as
its own ONNX file, and the worker builds the backend of the version a job asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glioscope_common.inference_backend import OnnxRuntimeBackend, TritonBackend, make_backend
from glioscope_common.model_metadata import UnknownModelVersion, model_versions

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "model_repository"
MODEL_DIR = MODELS / "glioscope_unet"


@pytest.fixture(scope="module")
def triton_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the tumour model (every version folder)."""
    repo = tmp_path_factory.mktemp("unet-versions")
    (repo / MODEL_DIR.name).symlink_to(MODEL_DIR)
    return repo


def test_triton_serves_every_version_as_its_onnx_file(triton) -> None:  # type: ignore[no-untyped-def]
    versions = model_versions(MODEL_DIR)
    assert [v.folder for v in versions] == ["1", "2"]
    patch = np.random.default_rng(16).normal(size=(1, 4, *versions[0].metadata.patch_size)).astype(np.float32)
    outputs = []
    for version in versions:
        meta = version.metadata
        served = make_backend(triton.grpc_url, MODEL_DIR, meta, triton_version=version.folder)
        assert isinstance(served, TritonBackend) and served.model_version == version.folder
        local = OnnxRuntimeBackend(version.onnx_path, threads=2, input_name=meta.input_name, output_name=meta.output_name)
        outputs.append(served.infer(patch))
        np.testing.assert_allclose(outputs[-1], local.infer(patch), atol=1e-4)
        served.close()
    assert np.abs(outputs[0] - outputs[1]).max() > 0.01  # two different networks, not one served twice


def test_the_worker_runs_the_version_a_job_asks_for(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """GLIOSCOPE_MODEL_VERSION chooses the default; a job's version gets its own service and backend."""
    from glioscope_inference.segmentation import tasks

    monkeypatch.setenv("GLIOSCOPE_MODEL_REPOSITORY", str(MODELS))
    monkeypatch.setenv("GLIOSCOPE_MODEL_NAME", MODEL_DIR.name)
    monkeypatch.setenv("GLIOSCOPE_DATABASE_URL", f"sqlite:///{tmp_path}/jobs.db")
    monkeypatch.setenv("GLIOSCOPE_SERVICE_TOKEN", "model-versions-test-token-0123456789abcdef")
    monkeypatch.setenv("GLIOSCOPE_INFERENCE_URL", "grpc://triton:8001")
    tasks._service.cache_clear()
    try:
        default, _, _ = tasks._service()
        assert default.metadata.version == "0.4.0"  # the newest
        assert default._backend_factory().model_version == "2"
        older, _, _ = tasks._service("0.3.1")
        assert older.metadata.version == "0.3.1" and older._backend_factory().model_version == "1"
        with pytest.raises(UnknownModelVersion, match="available: 0.3.1, 0.4.0"):
            tasks._service("9.9.9")
        monkeypatch.setenv("GLIOSCOPE_MODEL_VERSION", "0.3.1")
        monkeypatch.setenv("GLIOSCOPE_INFERENCE_URL", "onnxruntime")
        tasks._service.cache_clear()
        default, _, _ = tasks._service()
        assert default.metadata.version == "0.3.1"
        assert Path(default._backend_factory().session._model_path) == MODEL_DIR / "1" / "model.onnx"  # type: ignore[attr-defined]
    finally:
        tasks._service.cache_clear()
