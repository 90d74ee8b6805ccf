"""glioscope_common.model_metadata: version folders, the older root layout, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glioscope_common.model_metadata import ModelMetadata, UnknownModelVersion, model_versions, resolve_model_version

REPO = Path(__file__).resolve().parents[3]
SHIPPED = json.loads((REPO / "model_repository" / "glioscope_unet" / "1" / "metadata.json").read_text())


def write(folder: Path, version: str, onnx_file: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({**SHIPPED, "version": version, "onnx_file": onnx_file}))


def test_version_folders_newest_by_number_and_chosen_by_version(tmp_path: Path) -> None:
    for folder, version in (("2", "0.4.0"), ("10", "1.0.0"), ("1", "0.3.1")):
        write(tmp_path / folder, version, f"{folder}/model.onnx")
    assert [v.folder for v in model_versions(tmp_path)] == ["1", "2", "10"]  # numbers, not text
    assert ModelMetadata.load(tmp_path).version == "1.0.0"
    chosen = resolve_model_version(tmp_path, "0.4.0")
    assert chosen.folder == "2" and chosen.onnx_path == tmp_path / "2" / "model.onnx"
    with pytest.raises(UnknownModelVersion, match=r"available: 0.3.1, 0.4.0, 1.0.0") as refused:
        resolve_model_version(tmp_path, "0.5.0")
    assert refused.value.status_code == 400


def test_a_root_metadata_file_is_one_version(tmp_path: Path) -> None:
    write(tmp_path, "0.3.1", "1/model.onnx")
    (version,) = model_versions(tmp_path)
    assert version.folder == "" and version.onnx_path == tmp_path / "1" / "model.onnx"
    assert ModelMetadata.load(tmp_path, "0.3.1").version == "0.3.1"


def test_inconsistent_folders_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "1", "0.3.1", "2/model.onnx")
    with pytest.raises(ValueError, match="must be in 1/"):
        model_versions(tmp_path)
    write(tmp_path / "1", "0.3.1", "1/model.onnx")
    write(tmp_path / "2", "0.3.1", "2/model.onnx")
    with pytest.raises(ValueError, match="same metadata version"):
        model_versions(tmp_path)
    with pytest.raises(UnknownModelVersion, match="metadata.json missing"):
        resolve_model_version(tmp_path / "absent")


def test_accuracy_takes_a_per_case_table() -> None:
    table = {"cases": [{"case": "BraTS-GLI-00001-000", "dice_WT": 0.91}], "dice_WT_mean": 0.91, "n": 1}
    meta = ModelMetadata.model_validate({**SHIPPED, "accuracy": table})
    assert meta.accuracy["cases"][0]["dice_WT"] == 0.91
    assert meta.accuracy_summary() == {"dice_WT_mean": 0.91, "n": 1}
