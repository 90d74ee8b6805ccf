"""Brain extraction in the pipeline (issue 15, item 1): deepbet's networks with onnxruntime on the
real raw T1c, and when the pipeline uses them (only for images that are not skull-stripped)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from glioscope_common.errors import UnprocessableInput
from glioscope_common.measurements import AtlasRegistration
from glioscope_inference import pipeline
from glioscope_inference.brain_extraction import (
    BRAIN_MODEL,
    BrainExtractionResult,
    dilate_mm,
    load_brain_extractor,
)
from glioscope_inference.pipeline import BRAIN_EXTRACTION_NOTE, STAGES, segment_study

from .conftest import REPO, raw_case

BRAIN_DIR = REPO / "model_repository" / BRAIN_MODEL


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def test_the_model_folder_is_complete_and_says_where_it_comes_from() -> None:
    import json

    meta = json.loads((BRAIN_DIR / "metadata.json").read_text())
    assert meta["pipeline"] == "deepbet" and meta["licence"]["spdx"] == "MIT"
    assert "Münster" in (BRAIN_DIR / "LICENSE-deepbet").read_text()
    import hashlib

    for role, name in meta["files"].items():  # the networks are the Triton models' files (test_brain_triton.py)
        assert name == f"../{meta['triton_models'][role]}/1/model.onnx"
        assert hashlib.sha256((BRAIN_DIR / name).read_bytes()).hexdigest() == meta["files_sha256"][role]
    assert meta["use"]["brain_ml_range"] == [800.0, 2200.0]
    # the pipeline's folder (metadata, licence) is not a Triton model itself: Triton loads the networks' folders
    assert not (BRAIN_DIR / "config.pbtxt").exists()


def test_a_missing_folder_gives_no_extractor(tmp_path: Path) -> None:
    assert load_brain_extractor(tmp_path / "absent") is None


def test_dilation_in_millimetres_on_an_anisotropic_grid() -> None:
    mask = np.zeros((21, 21, 9), dtype=bool)
    mask[10, 10, 4] = True
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    out = dilate_mm(mask, affine, 2.5)
    assert out[10, 8, 4] and out[12, 10, 4] and not out[10, 7, 4]  # 2 voxels of 1 mm in plane
    assert not out[10, 10, 3]  # a 5 mm slice is further than 2.5 mm
    assert dilate_mm(mask, affine, 0.0) is mask


def test_raw_t1c_brain_mask_against_the_case_mask() -> None:
    """The colleague's figures (docs/brain-extraction.md): Dice 0.9709 on the raw T1c."""
    import nibabel as nib

    case = raw_case()
    extractor = load_brain_extractor(BRAIN_DIR, 2)
    assert extractor is not None
    image = nib.load(str(case / "t1c.nii.gz"))
    result = extractor.extract(image.get_fdata(dtype=np.float32), image.affine)
    reference = np.asanyarray(nib.load(str(case / "t1c_brainmask.nii.gz")).dataobj) > 0
    assert result.mask.shape == reference.shape
    score = dice(result.mask, reference)
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    print(f"raw T1c brain mask: Dice {score:.4f}, {result.mask.sum() * voxel_ml:.0f} mL")
    assert score >= 0.95


# ---------------------------------------------------------------------------- when the pipeline uses it
@dataclass
class FakeExtractor:
    """Stands for BrainExtractor: a fixed mask (half the T1c grid) or a failure if called."""

    keep_lower_half: bool = True
    brain_ml_range: tuple[float, float] = (0.0, 1e9)
    dilate_mm: float = 0.0
    calls: int = 0

    def extract(self, data: np.ndarray, affine: np.ndarray) -> BrainExtractionResult:
        self.calls += 1
        mask = np.zeros(data.shape, dtype=bool)
        mask[: data.shape[0] // 2] = True  # one side of the head (the T1c blob's side)
        return BrainExtractionResult(mask, mask.astype(np.float32), (slice(None),) * 3, 0.0, 1.0)


def test_skull_stripped_inputs_do_not_run_brain_extraction(synthetic_study, tiny_metadata, tiny_backend) -> None:
    spy = FakeExtractor()
    result = segment_study(synthetic_study, tiny_metadata, tiny_backend, coregister=False, brain_extractor=spy)
    assert spy.calls == 0 and result.brain_mask is None
    assert set(result.timings_s) == set(STAGES)
    assert BRAIN_EXTRACTION_NOTE not in result.measurements.input_warnings


def test_not_skull_stripped_inputs_are_cut_to_the_brain(synthetic_study, tiny_metadata, tiny_backend,
                                                        monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "SKULL_STRIPPED_MAX_ML", 0.0)  # every input "looks raw"
    # the phantom's half "brain" is no brain for the atlas: accept its registration here (the next test
    # shows what the real registration does with it)
    monkeypatch.setattr(pipeline, "_register", lambda image, brain: AtlasRegistration(
        world_to_mni=np.eye(4).tolist(), brain_dice=0.9, scales=(1.0, 1.0, 1.0), accepted=True))
    spy = FakeExtractor()
    result = segment_study(synthetic_study, tiny_metadata, tiny_backend, coregister=False, brain_extractor=spy)
    assert spy.calls == 1 and result.brain_mask is not None
    half = result.label_map.shape[0] // 2
    assert not result.label_map[half:].any()  # no label outside the brain mask
    assert result.label_map[:half].any()  # the lesion inside it is kept
    assert result.measurements.input_warnings == [BRAIN_EXTRACTION_NOTE]
    assert "brain_extraction" in result.timings_s


def test_an_extracted_brain_unlike_the_atlas_fails_the_job(synthetic_study, tiny_metadata, tiny_backend,
                                                          monkeypatch) -> None:
    """A plausible volume that is not shaped like a brain (here half a phantom) fails after the registration
    to the atlas, instead of labelling whatever the mask kept."""
    monkeypatch.setattr(pipeline, "SKULL_STRIPPED_MAX_ML", 0.0)
    with pytest.raises(UnprocessableInput, match="brain extraction failed: the extracted brain does not match the brain atlas"):
        segment_study(synthetic_study, tiny_metadata, tiny_backend, coregister=False, brain_extractor=FakeExtractor())


def test_an_implausible_brain_volume_fails_the_job(synthetic_study, tiny_metadata, tiny_backend, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "SKULL_STRIPPED_MAX_ML", 0.0)
    with pytest.raises(UnprocessableInput, match="brain extraction failed"):
        segment_study(synthetic_study, tiny_metadata, tiny_backend, coregister=False,
                      brain_extractor=FakeExtractor(brain_ml_range=(800.0, 2200.0)))
