"""Issue 15, item 3: the labels do not depend on a linear rescale or offset of the intensities.

A skull-stripped BraTS case scaled x3 with +100 on every voxel (so the background is 100, not 0) fell
from whole-tumour Dice 0.87 to 0.06, and z-scored copies with a constant negative background lost
too: "brain = non-zero voxels" no longer held. The pipeline now moves a constant background to 0
before anything else (preprocess.without_constant_background)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glioscope_common.dev.testing import require_path
from glioscope_common.volume import Volume
from glioscope_inference.pipeline import segment_study
from glioscope_inference.preprocess import constant_background, without_constant_background

REPO = Path(__file__).resolve().parents[3]
BRATS = REPO.parent / "shared" / "data" / "real" / "brats-gli-00001-000"
FILES = {"T1": "t1n", "T1c": "t1c", "T2": "t2w", "FLAIR": "t2f"}


def test_constant_background_is_found_and_moved_to_zero() -> None:
    rng = np.random.default_rng(0)
    brain = np.zeros((20, 22, 18), np.float32)
    brain[5:15, 6:16, 4:14] = rng.uniform(50, 500, (10, 10, 10))
    for scale, offset in [(1.0, 0.0), (3.0, 100.0), (0.01, -7.5), (-2.0, 40.0)]:
        data = brain * scale + offset
        assert constant_background(data) == pytest.approx(offset, abs=1e-4)
        shifted = without_constant_background(Volume(data, np.eye(4))).data
        assert np.array_equal(shifted != 0, brain != 0)
    # Noise everywhere (a raw image): no single value fills the border, nothing is moved.
    noisy = rng.normal(20, 5, (20, 22, 18)).astype(np.float32)
    assert constant_background(noisy) == 0.0
    volume = Volume(noisy, np.eye(4))
    assert without_constant_background(volume) is volume


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


@pytest.mark.slow
def test_labels_survive_rescaling_offsets_and_zscoring_on_a_real_case() -> None:
    """The shipped model on the real BraTS case: x3 + 100 on every voxel, and z-scored copies whose
    background is a constant negative value, give the same whole tumour (Dice within 0.02)."""
    require_path(BRATS, "../shared/data/real")
    import nibabel as nib

    from glioscope_common.inference_backend import OnnxRuntimeBackend
    from glioscope_common.model_metadata import ModelMetadata

    model_dir = REPO / "model_repository" / "glioscope_unet"
    metadata = ModelMetadata.load(model_dir)
    backend = OnnxRuntimeBackend(model_dir / metadata.onnx_file, threads=2)
    original = {}
    for role, suffix in FILES.items():
        image = nib.load(str(BRATS / f"BraTS-GLI-00001-000-{suffix}.nii.gz"))
        original[role] = Volume(np.asanyarray(image.dataobj, dtype=np.float32), image.affine)

    def whole_tumour(volumes: dict[str, Volume]) -> np.ndarray:
        return segment_study(volumes, metadata, backend, coregister=False).label_map > 0

    reference = whole_tumour(original)
    assert reference.sum() > 1000  # the case has a large tumour
    rescaled = {r: Volume(v.data * 3.0 + 100.0, v.affine) for r, v in original.items()}

    def zscored(v: Volume) -> Volume:
        inside = v.data[v.data != 0]
        return Volume(((v.data - inside.mean()) / inside.std()).astype(np.float32), v.affine)

    for name, volumes in [("x3 + 100", rescaled), ("z-scored", {r: zscored(v) for r, v in original.items()})]:
        assert all(constant_background(v.data) != 0 for v in volumes.values()), name
        result = segment_study(volumes, metadata, backend, coregister=False)
        dice = _dice(result.label_map > 0, reference)
        assert dice >= 0.98, (name, dice)
        assert not result.measurements.input_warnings, (name, result.measurements.input_warnings)


@pytest.mark.slow
def test_a_raw_studys_labels_survive_a_different_rescale_of_each_sequence() -> None:
    """The raw TCGA study (skull, noise in the background: no constant background to move) with each
    sequence rescaled and offset differently: brain extraction and the z-score inside the brain mask make
    the labels independent of it (whole tumour within Dice 0.02 of the original)."""
    import nibabel as nib

    from glioscope_common.inference_backend import OnnxRuntimeBackend
    from glioscope_common.model_metadata import ModelMetadata
    from glioscope_inference.brain_extraction import BRAIN_MODEL, load_brain_extractor

    raw = require_path(REPO.parent / "shared" / "data" / "real" / "tcga-fg-6692-raw", "../shared/data/real")
    model_dir = REPO / "model_repository" / "glioscope_unet"
    metadata = ModelMetadata.load(model_dir)
    backend = OnnxRuntimeBackend(model_dir / metadata.onnx_file, threads=2)
    extractor = load_brain_extractor(REPO / "model_repository" / BRAIN_MODEL, 2)
    volumes = {}
    for role, name in {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}.items():
        image = nib.load(str(raw / f"{name}.nii.gz"))
        volumes[role] = Volume(np.asarray(image.dataobj, dtype=np.float32), image.affine)
    original = segment_study(volumes, metadata, backend, brain_extractor=extractor).label_map
    changes = {"T1": (3.0, 100.0), "T1c": (0.5, 1000.0), "T2": (2.0, -300.0), "FLAIR": (7.0, 25.0)}
    rescaled = {role: Volume(v.data * changes[role][0] + changes[role][1], v.affine) for role, v in volumes.items()}
    labels = segment_study(rescaled, metadata, backend, brain_extractor=extractor).label_map
    a, b = original > 0, labels > 0
    assert a.sum() > 500
    dice = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    assert dice >= 0.98, dice
