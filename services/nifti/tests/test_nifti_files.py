from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from urllib.parse import quote

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from glioscope_common.errors import InvalidInput
from glioscope_nifti.files.paths import parse_bids_path

T1 = "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz"
T1C = "sub-01/ses-01/anat/sub-01_ses-01_ce-gadolinium_T1w.nii.gz"
DSEG = "derivatives/glioscope/sub-01/ses-01/anat/sub-01_ses-01_space-T1c_dseg.nii.gz"
BRAIN_MASK = "derivatives/glioscope/sub-01/ses-01/anat/sub-01_ses-01_space-orig_desc-brain_mask.nii.gz"


def url(path: str) -> str:
    # Encode '/' too so that the HTTP client never normalises '..' segments away: the server must see them.
    return "/api/nifti/files/" + quote(path, safe="")


def test_round_trip_upload_list_get_delete(client: TestClient, auth, small_nifti: bytes, root: Path) -> None:
    response = client.put(f"/api/nifti/files/{T1}", content=small_nifti, headers=auth)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["path"] == T1
    assert body["size_bytes"] == len(small_nifti)
    assert len(body["sha256"]) == 64
    assert body["shape"] == [8, 9, 10]
    assert body["voxel_size_mm"] == [1.0, 1.0, 2.0]

    assert client.put(f"/api/nifti/files/{DSEG}", content=small_nifti, headers=auth).status_code == 201
    assert client.put(f"/api/nifti/files/{T1}", content=small_nifti, headers=auth).status_code == 200  # replaced

    listing = client.get("/api/nifti/files", headers=auth).json()["files"]
    assert [f["path"] for f in listing] == [DSEG, T1]
    assert listing[1]["size_bytes"] == len(small_nifti) and listing[1]["modified"]
    assert client.get("/api/nifti/files", params={"subject": "02"}, headers=auth).json()["files"] == []
    assert len(client.get("/api/nifti/files", params={"subject": "01", "session": "01"}, headers=auth).json()["files"]) == 2

    got = client.get(f"/api/nifti/files/{T1}", headers=auth)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/gzip"
    assert got.content == small_nifti
    image = nib.Nifti1Image.from_bytes(gzip.decompress(got.content))
    assert image.shape == (8, 9, 10)

    # BIDS dataset descriptions
    raw = json.loads((root / "dataset_description.json").read_text())
    assert raw == {"Name": "Glioscope", "BIDSVersion": "1.9.0", "DatasetType": "raw"}
    deriv = json.loads((root / "derivatives/glioscope/dataset_description.json").read_text())
    assert deriv["DatasetType"] == "derivative" and deriv["GeneratedBy"][0]["Name"] == "Glioscope"

    assert client.delete(f"/api/nifti/files/{T1}", headers=auth).status_code == 204
    assert not (root / "sub-01").exists()  # empty folders removed
    assert client.get(f"/api/nifti/files/{T1}", headers=auth).status_code == 404
    assert client.delete(f"/api/nifti/files/{T1}", headers=auth).status_code == 404
    assert client.delete(f"/api/nifti/files/{DSEG}", headers=auth).status_code == 204
    assert (root / "derivatives/glioscope/dataset_description.json").exists()
    assert not list((root / ".tmp").iterdir())


def test_t1c_and_sidecar(client: TestClient, auth, small_nifti: bytes, root: Path) -> None:
    assert client.put(f"/api/nifti/files/{T1C}", content=small_nifti, headers=auth).status_code == 201
    sidecar = T1C.replace(".nii.gz", ".json")
    response = client.put(f"/api/nifti/files/{sidecar}", json={"EchoTime": 0.003}, headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["shape"] is None
    got = client.get(f"/api/nifti/files/{sidecar}", headers=auth)
    assert got.headers["content-type"] == "application/json" and got.json() == {"EchoTime": 0.003}
    bad = client.put(f"/api/nifti/files/{sidecar}", content=b"[1, 2]", headers=auth)
    assert bad.status_code == 400 and "JSON object" in bad.json()["detail"]
    assert client.put(f"/api/nifti/files/{sidecar}", content=b"{nope", headers=auth).status_code == 400


BAD_PATHS = [
    "../x",
    "../../etc/passwd",
    "sub-01/../../etc/passwd",
    "sub-01/ses-01/anat/../../../../outside_T1w.nii.gz",
    "/etc/passwd",
    "/sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz",
    "C:/windows/sub-01_ses-01_T1w.nii.gz",
    "sub-01/ses-01/anat/sub-02_ses-01_T1w.nii.gz",  # subject mismatch
    "sub-01/ses-01/anat/sub-01_ses-02_T1w.nii.gz",  # session mismatch
    "sub-01/ses-01/anat/sub-01_ses-01_bold.nii.gz",  # wrong suffix
    "sub-01/ses-01/anat/sub-01_ses-01_dseg.nii.gz",  # derivative suffix in raw data
    "sub-01/ses-01/anat/sub-01_ses-01_desc-brain_mask.nii.gz",  # the brain mask is a derivative
    "derivatives/glioscope/sub-01/ses-01/anat/sub-01_ses-01_desc-brain_space-orig_mask.nii.gz",  # entity order
    "derivatives/glioscope/sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz",  # raw suffix in derivatives
    "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii",  # not gzipped
    "sub-01/ses-01/anat/sub-01_ses-01_T1w.txt",
    "sub-01/ses-01/func/sub-01_ses-01_T1w.nii.gz",  # wrong datatype folder
    "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz/",  # trailing slash
    "sub-01/ses-01/anat/",
    "sub-01/ses-01/anat/sub-01 _ses-01_T1w.nii.gz",  # space
    "sub-0 1/ses-01/anat/sub-0 1_ses-01_T1w.nii.gz",
    "sub-\u00e9/ses-01/anat/sub-\u00e9_ses-01_T1w.nii.gz",  # unicode label
    "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz\u200b",  # zero-width space
    "sub-01\\ses-01\\anat\\sub-01_ses-01_T1w.nii.gz",  # backslashes
    "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz\x00.png",  # NUL
    "sub-01//ses-01/anat/sub-01_ses-01_T1w.nii.gz",
    "sub-01/./ses-01/anat/sub-01_ses-01_T1w.nii.gz",
    "sub-01_x/ses-01/anat/sub-01_x_ses-01_T1w.nii.gz",  # '_' in a label
    "sub-/ses-01/anat/sub-_ses-01_T1w.nii.gz",  # empty label
    "sub-01/ses-01/anat/sub-01_ses-01_foo-bar_T1w.nii.gz",  # unknown entity
    "sub-01/ses-01/anat/sub-01_ses-01_run-1_acq-x_T1w.nii.gz",  # entity order
    "sub-01/ses-01/anat/sub-01_ses-01_run-a_T1w.nii.gz",  # non-numeric run
    "dataset_description.json",
    "%2e%2e/%2e%2e/etc/passwd",  # double-encoded traversal arrives as literal %2e
    "",
]


def test_the_brain_mask_is_a_derivative() -> None:
    parsed = parse_bids_path(BRAIN_MASK)
    assert parsed.derivative and parsed.suffix == "mask"
    assert parsed.entities == (("space", "orig"), ("desc", "brain"))


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_bad_paths_are_rejected_by_the_parser(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_bids_path(bad)


@pytest.mark.parametrize("bad", [p for p in BAD_PATHS if p and "\x00" not in p])
def test_bad_paths_via_http(bad: str, client: TestClient, auth, small_nifti: bytes, tmp_path: Path, tree) -> None:
    before = tree(tmp_path)
    response = client.put(url(bad), content=small_nifti, headers=auth)
    assert response.status_code == 400, (bad, response.status_code, response.text)
    body = response.json()
    assert body["error"] == "invalid_input" and body["detail"] and body["request_id"]
    assert tree(tmp_path) == before  # nothing written anywhere (root and around it)
    assert client.get(url(bad), headers=auth).status_code == 400
    assert client.delete(url(bad), headers=auth).status_code == 400


@pytest.mark.parametrize("raw_url", ["/api/nifti/files/%2e%2e/%2e%2e/etc/passwd", "/api/nifti/files/sub-01/..%2f..%2fx"])
def test_percent_encoded_traversal(raw_url: str, client: TestClient, auth, small_nifti: bytes, tmp_path: Path, tree) -> None:
    before = tree(tmp_path)
    response = client.put(raw_url, content=small_nifti, headers=auth)
    assert response.status_code in (400, 404), response.text
    assert tree(tmp_path) == before


def test_nul_byte_in_url_rejected(client: TestClient, auth, small_nifti: bytes) -> None:
    response = client.put("/api/nifti/files/sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz%00", content=small_nifti, headers=auth)
    assert response.status_code == 400


def test_symlink_escape_rejected(client: TestClient, auth, small_nifti: bytes, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "sub-01").mkdir(parents=True)
    os.symlink(outside, root / "sub-01" / "ses-01")
    response = client.put(f"/api/nifti/files/{T1}", content=small_nifti, headers=auth)
    assert response.status_code == 400 and "escapes" in response.json()["detail"]
    assert list(outside.iterdir()) == []


def test_not_a_nifti(client: TestClient, auth, make_nifti) -> None:
    plain = client.put(f"/api/nifti/files/{T1}", content=b"hello world" * 10, headers=auth)
    assert plain.status_code == 400 and "gzip" in plain.json()["detail"]
    garbage = client.put(f"/api/nifti/files/{T1}", content=gzip.compress(b"\0" * 400), headers=auth)
    assert garbage.status_code == 400
    truncated = make_nifti()[:-40]
    assert client.put(f"/api/nifti/files/{T1}", content=truncated, headers=auth).status_code == 400
    assert client.put(f"/api/nifti/files/{T1}", content=b"", headers=auth).status_code == 400
    corrupt = bytearray(make_nifti())
    corrupt[20:60] = bytes(40)  # deflate data damaged in the middle of the stream
    response = client.put(f"/api/nifti/files/{T1}", content=bytes(corrupt), headers=auth)
    assert response.status_code == 400 and "corrupt" in response.json()["detail"]


def test_nan_affine_rejected(client: TestClient, auth) -> None:
    image = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4))
    block = bytearray(image.to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(block)))
    header["srow_x"] = [np.nan, 0, 0, 0]
    header["sform_code"] = 1
    header["qform_code"] = 0
    block[:348] = header.binaryblock
    raw = gzip.compress(bytes(block))
    response = client.put(f"/api/nifti/files/{T1}", content=raw, headers=auth)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_voxels_rejected(client: TestClient, auth, root: Path, bad: float) -> None:
    data = np.ones((6, 5, 4), dtype=np.float32)
    data[2, 3, 1] = bad
    raw = gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes())
    response = client.put(f"/api/nifti/files/{T1}", content=raw, headers=auth)
    assert response.status_code == 400
    assert "NaN or Inf" in response.json()["detail"]
    assert not list(root.rglob("*.nii.gz"))


def test_oversize_413(client: TestClient, auth, make_nifti, root: Path) -> None:
    big = make_nifti(shape=(128, 128, 80), noise=True)  # noise does not compress: > 2 MiB
    assert len(big) > 2 * 1024 * 1024
    response = client.put(f"/api/nifti/files/{T1}", content=big, headers=auth)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert not (root / "sub-01").exists()

    def chunks():  # no Content-Length: the streaming limit still applies
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    response = client.put(f"/api/nifti/files/{T1}", content=chunks(), headers=auth)
    assert response.status_code == 413
    assert not list((root / ".tmp").iterdir())


def test_token_required(client: TestClient, small_nifti: bytes) -> None:
    for method, path in [("put", T1), ("get", T1), ("delete", T1), ("get", "")]:
        response = client.request(method.upper(), f"/api/nifti/files/{path}".rstrip("/"), content=small_nifti if method == "put" else None)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"
    wrong = client.get("/api/nifti/files", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert client.post("/api/nifti/convert?subject=01&session=01", content=b"x").status_code == 401


def test_health_ready_metrics_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_readyz_fails_when_root_not_writable(tmp_path: Path) -> None:
    from glioscope_nifti.main import create_app
    from glioscope_nifti.settings import Settings

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = create_app(Settings(environment="test", nifti_root=blocker / "root", service_token="t-0123456789abcdefghijklmnopqrstuvwxyz"))
    response = TestClient(app).get("/readyz")  # no lifespan: the root cannot even be created
    assert response.status_code == 503
