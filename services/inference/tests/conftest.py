"""Fixtures: a tiny ONNX model (1x1x1 Conv, fixed weights) with its metadata.json, and synthetic studies.

The tiny model maps z-scored channels [T1, T1c, T2, FLAIR] to logits
    background = 2.0, necrotic = -10, oedema = 1.0 * FLAIR, enhancing = 2.0 * T1c
so a bright FLAIR blob is labelled 2 and a bright T1c blob 3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import glioscope_inference  # noqa: F401
except ModuleNotFoundError:  # the inference package is not installed in this environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glioscope_common.dev.testing import require_path  # noqa: E402
from glioscope_common.model_metadata import ModelMetadata  # noqa: E402
from glioscope_common.volume import Volume  # noqa: E402

CHANNELS = ["T1", "T1c", "T2", "FLAIR"]
REPO = Path(__file__).resolve().parents[3]
RAW = REPO.parent / "shared" / "data" / "real" / "tcga-fg-6692-raw"  # the real raw TCGA case


def raw_case() -> Path:
    """RAW, or a skip on a machine without ../shared (a failure with CI=true: CI has the data)."""
    return require_path(RAW, "../shared/data/real")


def tiny_metadata_dict(spacing=(1.5, 1.5, 1.5), patch=(16, 16, 16), mask="nonzero") -> dict:
    def concept(value, meaning):
        return {"value": value, "scheme_designator": "SCT", "meaning": meaning}

    tissue = concept("85756007", "Tissue")
    return {
        "name": "tiny",
        "version": "0",
        "channels": CHANNELS,
        "spacing_mm": list(spacing),
        "normalisation": {"method": "zscore", "mask": mask, "clip": 5.0},
        "patch_size": list(patch),
        "overlap": 0.5,
        "output_type": "softmax",
        "labels": [
            {"value": 1, "name": "Necrotic core", "category": tissue, "type": concept("6574001", "Necrosis"), "color_rgb": [255, 255, 0]},
            {"value": 2, "name": "Oedema", "category": tissue, "type": concept("79654002", "Edema"), "color_rgb": [0, 200, 0]},
            {"value": 3, "name": "Enhancing tumour", "category": tissue, "type": concept("108369006", "Neoplasm"), "color_rgb": [255, 0, 0]},
        ],
        "intended_use": "tests only",
        "training_data": "none",
        "accepts_missing_sequences": True,  # the 1x1x1 stand-in reads each channel on its own
    }


def write_tiny_model(model_dir: Path, weights: np.ndarray | None = None, bias: np.ndarray | None = None, **meta) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if weights is None:
        weights = np.zeros((4, 4), dtype=np.float32)
        weights[2, 3] = 1.0  # oedema <- FLAIR
        weights[3, 1] = 2.0  # enhancing <- T1c
    if bias is None:
        bias = np.array([2.0, -10.0, 0.0, 0.0], dtype=np.float32)
    out_channels, in_channels = weights.shape
    w = numpy_helper.from_array(weights.reshape(out_channels, in_channels, 1, 1, 1).astype(np.float32), "W")
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    node = helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1, 1])
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", in_channels, "X", "Y", "Z"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", out_channels, "X", "Y", "Z"])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(model_dir / "1" / "model.onnx"))
    (model_dir / "metadata.json").write_text(json.dumps(tiny_metadata_dict(**meta)))
    return model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny_unet")


@pytest.fixture(scope="session")
def tiny_metadata(tiny_model_dir) -> ModelMetadata:
    return ModelMetadata.load(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir, tiny_metadata):
    from glioscope_common.inference_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(tiny_model_dir / tiny_metadata.onnx_file, threads=1)


def oblique_affine(angle_deg: float = 20.0, spacing=(1.0, 1.1, 1.2), origin=(-20.0, -25.0, -18.0)) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    tilt = np.deg2rad(10.0)
    rot = rot @ np.array([[1.0, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


# Blob centres in world RAS mm (the phantom is defined in world space, sampled on any grid).
FLAIR_CENTRE = np.array([7.0, 3.0, 2.0])
FLAIR_RADIUS = 8.0
T1C_CENTRE = np.array([-8.0, -4.0, -3.0])
T1C_RADIUS = 6.5


def phantom(affine: np.ndarray, shape, role: str) -> np.ndarray:
    """Brain ellipsoid (value 100) with a bright FLAIR blob (r 8 mm) and a bright T1c blob (r 6.5 mm)."""
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    world = ijk @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)
    brain = ((world / np.array([19.0, 23.0, 17.0], dtype=np.float32)) ** 2).sum(1) <= 1.0
    data = np.where(brain, 100.0, 0.0).astype(np.float32)
    if role == "FLAIR":
        data[brain & (np.linalg.norm(world - FLAIR_CENTRE, axis=1) <= FLAIR_RADIUS)] = 400.0
    if role == "T1c":
        data[brain & (np.linalg.norm(world - T1C_CENTRE, axis=1) <= T1C_RADIUS)] = 400.0
    return data.reshape(shape)


@pytest.fixture(scope="session")
def synthetic_study() -> dict[str, Volume]:
    """T1c on an oblique grid; the others on a plain 1.5 mm axis-aligned grid (same world phantom)."""
    volumes = {}
    t1c_affine, t1c_shape = oblique_affine(), (40, 48, 36)
    # centre the oblique grid on the world origin
    centre = t1c_affine[:3, :3] @ ((np.array(t1c_shape) - 1) / 2.0)
    t1c_affine[:3, 3] = -centre
    volumes["T1c"] = Volume(phantom(t1c_affine, t1c_shape, "T1c"), t1c_affine)
    other = np.diag([1.5, 1.5, 1.5, 1.0])
    other_shape = (30, 34, 26)
    other[:3, 3] = -(np.array(other_shape) - 1) / 2.0 * 1.5
    for role in ("T1", "T2", "FLAIR"):
        volumes[role] = Volume(phantom(other, other_shape, role), other)
    return volumes


@pytest.fixture(scope="session")
def blob_centres() -> dict[str, np.ndarray]:
    return {"FLAIR": FLAIR_CENTRE, "T1c": T1C_CENTRE}


@pytest.fixture(scope="session")
def make_phantom():
    return phantom
