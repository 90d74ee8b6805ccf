"""`glioscope segment --model-version`: the chosen version folder runs and DIR/model.json names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from glioscope_inference.cli import main

from .conftest import tiny_metadata_dict, write_tiny_model


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with version folders 1/ (0.1.0: oedema and enhancing) and 2/ (0.2.0: oedema only)."""
    root = tmp_path_factory.mktemp("versions")
    model_dir = root / "tiny_unet"
    for folder, version, enhancing in (("1", "0.1.0", 2.0), ("2", "0.2.0", 0.0)):
        weights = np.zeros((4, 4), dtype=np.float32)
        weights[2, 3] = 1.0  # oedema <- FLAIR
        weights[3, 1] = enhancing  # enhancing <- T1c
        built = write_tiny_model(root / f"build-{folder}", weights)
        (model_dir / folder).mkdir(parents=True)
        shutil.copy(built / "1" / "model.onnx", model_dir / folder / "model.onnx")
        meta = {**tiny_metadata_dict(), "version": version, "algorithm_version": version, "onnx_file": f"{folder}/model.onnx"}
        (model_dir / folder / "metadata.json").write_text(json.dumps(meta))
    return model_dir


def run(model_dir: Path, synthetic_study, out: Path, *options: str) -> int:  # type: ignore[no-untyped-def]
    inputs = out.parent / "inputs"
    inputs.mkdir(exist_ok=True)
    paths = []
    for role in ("T1", "T1c", "T2", "FLAIR"):
        path = inputs / f"{role}.nii.gz"
        if not path.exists():
            volume = synthetic_study[role]
            nib.save(nib.Nifti1Image(volume.data.astype(np.float32), volume.affine), str(path))
        paths += [f"--{role.lower()}", str(path)]
    return main(["segment", *paths, "--output", str(out), "--model-dir", str(model_dir), "--inference-url", "onnxruntime",
                 "--no-coregister", "--threads", "1", *options])


def test_model_version_flag_runs_that_version(two_versions, synthetic_study, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(two_versions, synthetic_study, tmp_path / "older", "--model-version", "0.1.0") == 0, capsys.readouterr().err
    assert "model tiny 0.1.0" in capsys.readouterr().err
    assert json.loads((tmp_path / "older" / "model.json").read_text())["version"] == "0.1.0"
    older = np.asarray(nib.load(str(tmp_path / "older" / "segmentation.nii.gz")).dataobj)

    assert run(two_versions, synthetic_study, tmp_path / "newest") == 0, capsys.readouterr().err  # default: the newest
    assert json.loads((tmp_path / "newest" / "model.json").read_text())["version"] == "0.2.0"
    newest = np.asarray(nib.load(str(tmp_path / "newest" / "segmentation.nii.gz")).dataobj)
    assert (older == 3).any() and not (newest == 3).any()  # version 2 has no enhancing channel


def test_unknown_model_version_is_a_bad_input(two_versions, synthetic_study, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(two_versions, synthetic_study, tmp_path / "out", "--model-version", "9.9.9") == 2
    err = capsys.readouterr().err
    assert "unknown model version '9.9.9'" in err and "available: 0.1.0, 0.2.0" in err
