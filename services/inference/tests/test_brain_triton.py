"""The brain model's two networks are Triton models (issue 15, item 1): `model_repository/glioscope_brain_bbox/`
and `glioscope_brain_mask/` (config.pbtxt, configs/cpu.pbtxt, 1/model.onnx) load in the real tritonserver the
tests use, and Triton answers what onnxruntime in the worker computes from the same files: the same brain
probability and the same mask, network by network and through deepbet's whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glioscope_common.dev.testing import require_module, require_path
from glioscope_inference.brain_extraction import (
    BRAIN_MODEL,
    BrainExtractor,
    triton_predictor,
    extract_brain,
    normalize,
    ort_session_predictor,
)

from .conftest import REPO, RAW

MODELS = REPO / "model_repository"
META = json.loads((MODELS / BRAIN_MODEL / "metadata.json").read_text())
NETWORKS = META["triton_models"]  # role -> Triton model name


@pytest.fixture(scope="module")
def triton_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the brain networks (the tumour model has its own Triton tests)."""
    repo = tmp_path_factory.mktemp("brain-models")
    for name in NETWORKS.values():
        (repo / name).symlink_to(MODELS / name)
    return repo


def test_the_model_folders_are_triton_models() -> None:
    for role, name in NETWORKS.items():
        folder = MODELS / name
        assert (folder / "1" / "model.onnx").resolve() == (MODELS / BRAIN_MODEL / META["files"][role]).resolve()
        assert "Münster" in (folder / "LICENSE-deepbet").read_text()
        for config, kind in (("config.pbtxt", "KIND_GPU"), ("configs/cpu.pbtxt", "KIND_CPU")):
            text = (folder / config).read_text()
            assert f'name: "{name}"' in text and 'platform: "onnxruntime_onnx"' in text and f"kind: {kind}" in text
            assert text.count("dims: [ 1, 1, -1, -1, -1 ]") == 2  # image and brain, any size (multiples of 32)


def test_triton_serves_the_brain_networks_as_onnxruntime_runs_them(triton) -> None:  # type: ignore[no-untyped-def]
    import httpx

    for name in NETWORKS.values():
        assert httpx.get(f"{triton.http_url}/v2/models/{name}/ready").status_code == 200, name
    # a bright ellipsoid in a dark box, deepbet-normalised, 64³ (sides must be multiples of 32)
    grid = np.mgrid[:64, :64, :64].astype(np.float32)
    head = (((grid - 32) / np.array([24, 28, 20], dtype=np.float32)[:, None, None, None]) ** 2).sum(axis=0) < 1
    rng = np.random.default_rng(3)
    x = normalize(head * 800 + rng.normal(0, 20, head.shape).astype(np.float32), 0.0, 900.0)
    for role, name in NETWORKS.items():
        local = ort_session_predictor(MODELS / name / "1" / "model.onnx", 1)(x)
        served = triton_predictor(triton.grpc_url, name)(x)
        assert served.shape == local.shape == x.shape
        np.testing.assert_allclose(served, local, atol=1e-5, err_msg=role)
        np.testing.assert_array_equal(served > 0.5, local > 0.5, err_msg=role)


def test_the_pipeline_on_triton_gives_the_same_brain_mask(triton) -> None:  # type: ignore[no-untyped-def]
    """The raw TCGA T1c through deepbet's pipeline with either backend (fine pass at 128³ to keep it short)."""
    nib = require_module("nibabel")
    path = require_path(RAW / "t1c.nii.gz", "../shared/data/real")
    image = nib.load(path)
    data, affine = np.asarray(image.dataobj, dtype=np.float32), image.affine
    fine = (128, 128, 128)
    local = extract_brain(data, affine, ort_session_predictor(MODELS / NETWORKS["bbox"] / "1" / "model.onnx", 1),
                          ort_session_predictor(MODELS / NETWORKS["mask"] / "1" / "model.onnx", 1), fine_shape=fine)
    served = extract_brain(data, affine, triton_predictor(triton.grpc_url, NETWORKS["bbox"]),
                           triton_predictor(triton.grpc_url, NETWORKS["mask"]), fine_shape=fine)
    assert local.mask.sum() > 100_000  # a brain, not an empty or full mask
    np.testing.assert_array_equal(served.mask, local.mask)


def test_the_worker_can_run_the_brain_model_on_triton(triton) -> None:  # type: ignore[no-untyped-def]
    """GLIOSCOPE_BRAIN_MODEL_ON_TRITON: the worker's BrainExtractor calls Triton's models and finds the brain
    onnxruntime finds (a synthetic head, 64³ coarse and fine passes to keep it short)."""
    grid = np.mgrid[:80, :96, :72].astype(np.float32)
    head = (((grid - np.array([40, 48, 36], dtype=np.float32)[:, None, None, None])
             / np.array([30, 38, 28], dtype=np.float32)[:, None, None, None]) ** 2).sum(axis=0) < 1
    data = (head * 600 + np.random.default_rng(5).normal(0, 10, head.shape)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    served = BrainExtractor(MODELS / BRAIN_MODEL, triton_url=triton.grpc_url)
    local = BrainExtractor(MODELS / BRAIN_MODEL, threads=1)
    for extractor in (served, local):
        extractor.fine_shape = (64, 64, 64)
    mask = served.extract(data, affine).mask
    assert mask.sum() > 0.2 * head.sum(), "the networks found the head's inside"
    np.testing.assert_array_equal(mask, local.extract(data, affine).mask)
