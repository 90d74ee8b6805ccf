from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.testing import require_executable, require_path
from glioscope_common.volume import Volume
from glioscope_nifti.main import create_app
from glioscope_nifti.settings import Settings

from .conftest import TOKEN, audit_database

GE_ZIP = Path(__file__).resolve().parents[3] / "shared/data/real/ge-epi-dicom/DICOM.zip"
GE_ZIP_ALT = Path("/work/shared/data/real/ge-epi-dicom/DICOM.zip")


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _series_zip() -> tuple[bytes, Volume]:
    from glioscope_common.dicom.write import write_series

    data = np.arange(12 * 10 * 6, dtype=np.float32).reshape(12, 10, 6)
    affine = np.array([[-0.9, 0, 0, 10.0], [0, -0.9, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    volume = Volume(data=data, affine=affine)
    datasets = write_series(
        volume,
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        series_instance_uid="1.2.826.0.1.3680043.8.498.2",
        series_number=1,
        series_description="T1 post",
        patient_id="TEST",
        patient_name="Test^Patient",
        study_date="20240101",
        study_time="120000",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.3",
    )
    members = {}
    for index, ds in enumerate(datasets):
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        members[f"series/IM{index:04d}"] = out.getvalue()
    members["README.txt"] = b"not dicom"
    return _zip(members), volume


def _dataset_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts)


def test_convert_pydicom_path(tmp_path: Path, auth) -> None:
    settings = Settings(environment="test", nifti_root=tmp_path / "ds", service_token=TOKEN, database_url=audit_database(tmp_path / "records"), dcm2niix="no-such-dcm2niix")
    body, volume = _series_zip()
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/nifti/convert",
            params={"subject": "P001", "session": "1", "suffix": "T1w", "ce": "gadolinium"},
            content=body,
            headers={**auth, "content-type": "application/zip"},
        )
        assert response.status_code == 201, response.text
        result = response.json()
        assert result["converter"] == "pydicom"
        assert result["path"] == "sub-P001/ses-1/anat/sub-P001_ses-1_ce-gadolinium_T1w.nii.gz"
        assert result["shape"] == [12, 10, 6]
        assert result["voxel_size_mm"] == pytest.approx([0.9, 0.9, 2.5])
        assert result["sidecar"]["path"].endswith("_ce-gadolinium_T1w.json")
        got = client.get(f"/api/nifti/files/{result['path']}", headers=auth)
        image = nib.Nifti1Image.from_bytes(gzip.decompress(got.content))
        np.testing.assert_allclose(image.affine, volume.affine, atol=1e-3)
        np.testing.assert_allclose(np.asarray(image.dataobj), volume.data, atol=0.5)
    assert not list((tmp_path / "ds/.tmp").iterdir())


def test_convert_real_ge_series_with_dcm2niix(client: TestClient, auth, root: Path) -> None:
    require_executable("dcm2niix", "Debian dcm2niix")
    zip_path = require_path(GE_ZIP if GE_ZIP.exists() else GE_ZIP_ALT, "../shared/data/real/ge-epi-dicom")
    response = client.post(
        "/api/nifti/convert",
        params={"subject": "GE", "session": "1", "suffix": "T2w"},
        content=zip_path.read_bytes(),
        headers=auth,
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["converter"] == "dcm2niix"
    assert result["shape"][:2] == [64, 64]
    assert result["voxel_size_mm"][0] == pytest.approx(3.44, abs=0.01)
    assert result["sidecar"] is not None
    assert (root / result["path"]).exists()


def test_convert_generated_series_with_dcm2niix(client: TestClient, auth) -> None:
    require_executable("dcm2niix", "Debian dcm2niix")
    body, volume = _series_zip()
    response = client.post("/api/nifti/convert", params={"subject": "X", "session": "Y", "suffix": "FLAIR"}, content=body, headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["converter"] == "dcm2niix"
    assert sorted(response.json()["shape"]) == sorted(volume.shape)


def test_zip_bomb_rejected(client: TestClient, auth, root: Path) -> None:
    bomb = _zip({"a.dcm": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    response = client.post("/api/nifti/convert?subject=01&session=01", content=bomb, headers=auth)
    assert response.status_code == 413
    assert "compression ratio" in response.json()["detail"]
    assert _dataset_files(root) == ["dataset_description.json", "derivatives/glioscope/dataset_description.json"]
    assert not list((root / ".tmp").iterdir())


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm", "a\\..\\evil.dcm"])
def test_traversal_zip_rejected(name: str, client: TestClient, auth, tmp_path: Path, tree) -> None:
    before = tree(tmp_path)
    body = _zip({"ok.dcm": b"x" * 10, name: b"evil"})
    response = client.post("/api/nifti/convert?subject=01&session=01", content=body, headers=auth)
    assert response.status_code == 400, response.text
    assert tree(tmp_path) == before
    assert not (tmp_path / "evil.dcm").exists()


def test_symlink_member_rejected(client: TestClient, auth) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
    response = client.post("/api/nifti/convert?subject=01&session=01", content=buffer.getvalue(), headers=auth)
    assert response.status_code == 400 and "symbolic link" in response.json()["detail"]


def test_zip_limits(tmp_path: Path, auth) -> None:
    settings = Settings(
        environment="test", nifti_root=tmp_path / "ds", service_token=TOKEN, database_url=audit_database(tmp_path / "records"),
        max_zip_members=10, max_zip_uncompressed_bytes=1024 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        many = _zip({f"{i}.dcm": b"x" for i in range(11)})
        response = client.post("/api/nifti/convert?subject=01&session=01", content=many, headers=auth)
        assert response.status_code == 400 and "members" in response.json()["detail"]
        big = _zip({"a.dcm": np.random.default_rng(0).bytes(2 * 1024 * 1024)}, zipfile.ZIP_STORED)
        response = client.post("/api/nifti/convert?subject=01&session=01", content=big, headers=auth)
        assert response.status_code == 413
        not_zip = client.post("/api/nifti/convert?subject=01&session=01", content=b"PK not really", headers=auth)
        assert not_zip.status_code == 400
        bad_subject = client.post("/api/nifti/convert?subject=../x&session=01", content=many, headers=auth)
        assert bad_subject.status_code == 400
        bad_suffix = client.post("/api/nifti/convert?subject=01&session=01&suffix=bold", content=many, headers=auth)
        assert bad_suffix.status_code == 400
        empty = client.post("/api/nifti/convert?subject=01&session=01", content=_zip({"a.txt": b"hello"}), headers=auth)
        assert empty.status_code == 422
