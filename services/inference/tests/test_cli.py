from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from glioscope_common.measurements import Measurements
from glioscope_inference.cli import main

from .conftest import RAW, REPO, raw_case


@pytest.fixture(scope="module")
def nifti_inputs(synthetic_study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nifti")
    paths = {}
    for role, volume in synthetic_study.items():
        path = folder / f"{role}.nii.gz"
        nib.save(nib.Nifti1Image(volume.data.astype(np.float32), volume.affine), str(path))
        paths[role] = path
    return paths


def test_segment_nifti_writes_outputs(nifti_inputs, tiny_model_dir, synthetic_study, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([
        "segment", "--t1", str(nifti_inputs["T1"]), "--t1c", str(nifti_inputs["T1c"]),
        "--t2", str(nifti_inputs["T2"]), "--flair", str(nifti_inputs["FLAIR"]),
        "--output", str(out), "--model-dir", str(tiny_model_dir), "--inference-url", "onnxruntime",
        "--no-coregister", "--threads", "1",
    ])
    assert code == 0, capsys.readouterr().err
    seg = nib.load(str(out / "segmentation.nii.gz"))
    t1c = synthetic_study["T1c"]
    assert seg.shape == t1c.shape and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, t1c.affine, atol=1e-4)
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels == 3).any() and (labels == 2).any()
    m = Measurements.model_validate(json.loads((out / "measurements.json").read_text()))
    assert m.tumour_detected
    for view in ("axial", "coronal", "sagittal"):
        assert (out / f"key_{view}.png").read_bytes()[:4] == b"\x89PNG"
    assert "WT" in capsys.readouterr().out


def test_missing_file_exit_code_2(nifti_inputs, tiny_model_dir, tmp_path, capsys):
    code = main([
        "segment", "--t1", str(nifti_inputs["T1"]), "--t1c", str(tmp_path / "absent.nii.gz"),
        "--t2", str(nifti_inputs["T2"]), "--flair", str(nifti_inputs["FLAIR"]),
        "--output", str(tmp_path / "out"), "--model-dir", str(tiny_model_dir),
    ])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "absent.nii.gz" in err and len(err.splitlines()) == 1


def test_invalid_settings_fail_instead_of_falling_back(nifti_inputs, tmp_path, capsys, monkeypatch):
    """An invalid GLIOSCOPE_* environment is an error naming the setting, not a quiet relative model path
    or onnxruntime (catches a CLI that swallows settings errors again)."""
    monkeypatch.setenv("GLIOSCOPE_METRICS_PORT", "not-a-port")
    code = main([
        "segment", "--t1", str(nifti_inputs["T1"]), "--t1c", str(nifti_inputs["T1c"]),
        "--t2", str(nifti_inputs["T2"]), "--flair", str(nifti_inputs["FLAIR"]), "--output", str(tmp_path / "out"),
    ])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "invalid GLIOSCOPE_* settings" in err and "metrics_port" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_without_t1c_and_flair_exit_code_2_naming_what_is_needed(nifti_inputs, tiny_model_dir, tmp_path, capsys):
    code = main(["segment", "--t1", str(nifti_inputs["T1"]), "--t2", str(nifti_inputs["T2"]),
                 "--output", str(tmp_path / "o"), "--model-dir", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot segment with T1, T2 only" in err and "(T1c) or a FLAIR" in err


def test_a_subset_of_sequences_is_segmented_with_the_regions_it_supports(nifti_inputs, tiny_model_dir, synthetic_study,
                                                                         tmp_path, capsys):
    """T1, T2 and FLAIR (no T1c): the output is on the FLAIR's grid, one whole-tumour label, WT only."""
    out = tmp_path / "out"
    code = main(["segment", "--t1", str(nifti_inputs["T1"]), "--t2", str(nifti_inputs["T2"]),
                 "--flair", str(nifti_inputs["FLAIR"]), "--output", str(out), "--model-dir", str(tiny_model_dir),
                 "--inference-url", "onnxruntime", "--no-coregister", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    seg = nib.load(str(out / "segmentation.nii.gz"))
    assert seg.shape == synthetic_study["FLAIR"].shape
    assert set(np.unique(np.asarray(seg.dataobj))) == {0, 5}  # WHOLE_TUMOUR_LABEL
    m = Measurements.model_validate(json.loads((out / "measurements.json").read_text()))
    assert m.sequences_used == ["T1", "T2", "FLAIR"] and list(m.region_volumes_ml) == ["WT"]
    assert "Sequences used: T1, T2, FLAIR; not available: T1c; regions not reported: tumour core (TC) and " \
           "enhancing tumour (ET)" in captured.err
    assert "WT " in captured.out and "TC" not in captured.out and "ET " not in captured.out


def test_dicom_folder_without_images_exit_code_2(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "readme.txt").write_text("not dicom")
    code = main(["segment", "--dicom", str(tmp_path / "dicom"), "--output", str(tmp_path / "o"),
                 "--model-dir", str(tiny_model_dir)])
    assert code == 2 and "no DICOM images" in capsys.readouterr().err


def test_segment_dicom_folder(synthetic_study, tiny_model_dir, tmp_path, capsys):
    from pydicom.uid import generate_uid

    from glioscope_common.dicom.write import write_series

    study, frame = generate_uid(), generate_uid()
    descriptions = {"T1": "t1_mprage_sag", "T1c": "t1_mprage_sag_KM", "T2": "t2_tse_tra", "FLAIR": "t2_tirm_tra_dark-fluid"}
    folder = tmp_path / "dicom"
    uids = {}
    for number, (role, volume) in enumerate(synthetic_study.items(), start=1):
        datasets = write_series(
            volume, study_instance_uid=study, series_instance_uid=None, series_number=number,
            series_description=descriptions[role], patient_id="P1", patient_name="Test^Patient",
            study_date="20260101", study_time="120000", frame_of_reference_uid=frame,
        )
        uids[role] = datasets[0].SeriesInstanceUID
        for n, ds in enumerate(datasets):
            path = folder / role / f"{n:03d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(str(path), enforce_file_format=True)
    out = tmp_path / "out"
    code = main(["segment", "--dicom", str(folder), "--output", str(out), "--model-dir", str(tiny_model_dir),
                 "--inference-url", "onnxruntime", "--no-coregister", "--quiet"])
    assert code == 0, capsys.readouterr().err
    seg = nib.load(str(out / "segmentation.nii.gz"))
    assert seg.shape[0] * seg.shape[1] * seg.shape[2] == int(np.prod(synthetic_study["T1c"].shape))
    labels = np.asarray(seg.dataobj)
    assert (labels == 3).any() and (labels == 2).any()
    # keep only the T1 and T2 series: refused, naming what is needed
    import shutil

    shutil.rmtree(folder / "FLAIR")
    shutil.rmtree(folder / "T1c")
    code = main(["segment", "--dicom", str(folder), "--output", str(out), "--model-dir", str(tiny_model_dir)])
    assert code == 2 and "cannot segment with T1, T2 only" in capsys.readouterr().err


def segment_raw(model_dir: Path, out: Path, capsys, *options: str) -> str:
    code = main([
        "segment", "--t1", str(RAW / "t1.nii.gz"), "--t1c", str(RAW / "t1c.nii.gz"),
        "--t2", str(RAW / "t2.nii.gz"), "--flair", str(RAW / "flair.nii.gz"),
        "--output", str(out), "--model-dir", str(model_dir), "--inference-url", "onnxruntime",
        "--threads", "2", *options,
    ])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


def brain_dice(out: Path) -> float:
    mask = np.asanyarray(nib.load(str(out / "brain_mask.nii.gz")).dataobj) > 0
    reference = np.asanyarray(nib.load(str(RAW / "t1c_brainmask.nii.gz")).dataobj) > 0
    return float(2 * (mask & reference).sum() / (mask.sum() + reference.sum()))


def test_a_raw_hospital_study_gets_brain_extraction(tmp_path, capsys):
    """The real TCGA case as a scanner writes it (skull, 5.5 mm slices, not co-registered): it does
    not look skull-stripped, so the brain is extracted (deepbet, the folder beside the model's) and
    the note, not the "not skull-stripped" warning, reaches stderr and measurements.json (the tiny
    model on a coarse grid: only the brain extraction matters here)."""
    raw_case()
    from .conftest import write_tiny_model

    model_dir = write_tiny_model(tmp_path / "models" / "tiny", spacing=(6.0, 6.0, 6.0))
    (tmp_path / "models" / "glioscope_brainmask").symlink_to(REPO / "model_repository" / "glioscope_brainmask")
    out = tmp_path / "out"
    err = segment_raw(model_dir, out, capsys, "--no-coregister")
    assert "do not look skull-stripped" not in err and "Skull and neck removed automatically" in err
    m = Measurements.model_validate(json.loads((out / "measurements.json").read_text()))
    assert len(m.input_warnings) == 1 and "deepbet" in m.input_warnings[0]
    assert brain_dice(out) >= 0.93


@pytest.mark.slow
def test_raw_hospital_study_labels_stay_inside_the_brain(tmp_path, capsys):
    """Issue 15: the shipped tumour model on the raw case (co-registered: its series moved between
    acquisitions): >= 95 % of the labelled voxels inside the case's brain mask (one voxel of slack),
    the brain mask at Dice >= 0.93 against it, the labels on the right frontal lesion."""
    raw_case()
    from scipy import ndimage

    out = tmp_path / "out"
    segment_raw(REPO / "model_repository" / "glioscope_unet", out, capsys)
    seg = nib.load(str(out / "segmentation.nii.gz"))
    labels = np.asanyarray(seg.dataobj)
    reference = np.asanyarray(nib.load(str(RAW / "t1c_brainmask.nii.gz")).dataobj) > 0
    slack = ndimage.binary_dilation(reference, structure=ndimage.generate_binary_structure(3, 3))
    labelled = int((labels > 0).sum())
    inside = float((labels[slack] > 0).sum() / max(1, labelled))
    score = brain_dice(out)
    m = Measurements.model_validate(json.loads((out / "measurements.json").read_text()))
    centroid = nib.affines.apply_affine(seg.affine, np.argwhere(labels > 0)).mean(axis=0) if labelled else None
    timings = json.loads((out / "timings.json").read_text())
    print(f"\nraw case: {labelled} labelled voxels ({ {v: int((labels == v).sum()) for v in (1, 2, 3)} }), "
          f"{inside:.1%} inside the brain mask (+1 voxel); brain mask Dice {score:.4f}; "
          f"hemisphere {m.hemisphere}; labels' centroid RAS {centroid} mm "
          f"(right frontal lesion labelled: {centroid is not None and centroid[0] > 0 and centroid[1] > 0}); "
          f"brain extraction {timings.get('brain_extraction')} s")
    assert labelled > 0
    assert inside >= 0.95
    assert score >= 0.93
    assert centroid is not None and centroid[0] > 0 and centroid[1] > 0  # right (R+), frontal (A+)
