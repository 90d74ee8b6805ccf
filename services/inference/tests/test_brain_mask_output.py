"""The brain mask is an output (issue 15, item 1): when brain extraction ran, the job stores it as the BIDS
derivative `..._space-orig_desc-brain_mask.nii.gz` beside the dseg, on the T1c's grid and affine, and lists
it in the job's nifti_paths as "brain_mask"; without brain extraction neither the file nor the key exists."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest

from glioscope_common.dev.testing import require_module
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.sequence_regions import plan_sequences
from glioscope_common.volume import Volume
from glioscope_inference.pipeline import SegmentationResult
from glioscope_inference.segmentation import service as service_module
from glioscope_inference.segmentation.service import SegmentationService

from .conftest import REPO


class FakeNifti:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put_file(self, path: str, content: bytes) -> dict:  # type: ignore[type-arg]
        self.files[path] = content
        return {"path": path}


class FakeDicomWeb:
    def store_instances(self, instances: list[bytes], study_instance_uid: str) -> SimpleNamespace:
        return SimpleNamespace(failed_sop_instance_uids=[])


class FakeReporting:
    def create_report(self, payload: dict, key_images: dict) -> dict:  # type: ignore[type-arg]
        return {"id": "report-1"}


def _t1c_dataset() -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.PatientID = "P-1"
    return ds


def _result(brain_mask: np.ndarray | None) -> SegmentationResult:
    affine = np.array([[0.9, 0, 0, -100], [0, 0.9, 0, -120], [0, 0, 5.5, -60], [0, 0, 0, 1]], dtype=float)
    labels = np.zeros((6, 5, 4), dtype=np.uint8)
    labels[2, 2, 2] = 2
    return SegmentationResult(
        label_map=labels, reference=Volume(np.zeros(labels.shape, np.float32), affine), measurements=None,  # type: ignore[arg-type]
        plan=plan_sequences(["T1", "T1c", "T2", "FLAIR"]),
        delivered_metadata=ModelMetadata.load(REPO / "model_repository" / "glioscope_unet"),
        key_images={}, timings_s={}, model_grid_labels=labels, model_grid_affine=affine,
        brain_mask=brain_mask, brain_ml=None if brain_mask is None else 1500.0,
    )


def _write(result: SegmentationResult, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], FakeNifti]:
    monkeypatch.setattr(service_module, "build_segmentation",
                        lambda *a, **k: SimpleNamespace(save_as=lambda buffer: buffer.write(b"seg")))
    nifti = FakeNifti()
    worker = SegmentationService(None, FakeDicomWeb(), nifti, FakeReporting(), lambda: None, None)  # type: ignore[arg-type]
    monkeypatch.setattr(worker, "_report_payload", lambda *a: {})
    with ThreadPoolExecutor(max_workers=3) as pool:
        outputs = worker._write_outputs(pool, [], "job-1", "1.2.3", {"T1c": [_t1c_dataset()]}, {}, result)
    assert outputs.report_id == "report-1"
    return outputs.nifti_paths, nifti


def test_the_brain_mask_is_stored_beside_the_dseg(monkeypatch: pytest.MonkeyPatch) -> None:
    brain = np.zeros((6, 5, 4), dtype=bool)
    brain[1:5, 1:4, 1:3] = True
    result = _result(brain)
    paths, nifti = _write(result, monkeypatch)

    path = paths["brain_mask"]
    assert path == paths["mask"].replace("_space-orig_dseg.nii.gz", "_space-orig_desc-brain_mask.nii.gz")
    assert path.startswith("derivatives/glioscope/sub-") and path.endswith("_space-orig_desc-brain_mask.nii.gz")
    image = nib.Nifti1Image.from_bytes(gzip.decompress(nifti.files[path]))
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(image.dataobj), brain.astype(np.uint8))
    np.testing.assert_allclose(image.affine, result.reference.affine)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    # the NIfTI service accepts the path (BIDS derivative, suffix "mask", entities space then desc)
    paths_module = require_module("glioscope_nifti.files.paths")
    parsed = paths_module.parse_bids_path(path)
    assert parsed.derivative and parsed.suffix == "mask" and dict(parsed.entities) == {"space": "orig", "desc": "brain"}


def test_no_brain_mask_without_brain_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    paths, nifti = _write(_result(None), monkeypatch)
    assert "brain_mask" not in paths and "mask" in paths
    assert not [p for p in nifti.files if "desc-brain" in p]
