"""Finding 4: Orthanc was open (REST without credentials, C-STORE from anyone, silent overwrites).

Against real Orthanc processes started as the product starts them (`LocalOrthanc`, the configuration
`make run` uses; the chart's configuration is checked in tests/chart/test_chart.py): the REST API and
DICOMweb answer 401 without the credentials; C-STORE is accepted only from a configured modality (calling
AET *and* address, called AET checked); a second copy of a stored instance, with another patient name and
other pixels, changes nothing that Orthanc or the gateway serves, and is logged with its origin."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dicomweb.multipart import encode_multipart_related
from glioscope_common.dicomweb.protocol import MULTIPART_DICOM, dicom_json_value
from glioscope_common.dev.orthanc import (
    DEFAULT_MODALITIES,
    LOCAL_SCU_AET,
    ORTHANC_DUPLICATE_AUDIT_LUA,
    LocalOrthanc,
    orthanc_modalities,
)
from glioscope_common.settings import CommonSettings
from glioscope_common.dev.testing import make_mr_series, require_service, serving

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
# A modality configured for another address: its AET from this machine must be refused.
ELSEWHERE = {"ct-elsewhere": {"AET": "CT-ELSEWHERE", "Host": "127.0.0.2", "Port": 104}}


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrthanc]:
    """An Orthanc as `make run` starts it (its own password, the default modality plus one elsewhere)."""
    yield from serving(LocalOrthanc(tmp_path_factory.mktemp("locked-orthanc"), stable_age=2,
                                    password="pw_" + "x" * 30, modalities={**DEFAULT_MODALITIES, **ELSEWHERE}))


def storescu(orthanc: LocalOrthanc, files: list[Path], calling: str,
             called: str | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("storescu") is None:
        require_service("storescu", "install the Debian package dcmtk")
    return subprocess.run(
        ["storescu", "-aet", calling, "-aec", called or orthanc.aet, "127.0.0.1", str(orthanc.dicom_port),
         *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )


def write(folder: Path, instances: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(instances):
        path = folder / f"{i}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def tampered(data: bytes) -> bytes:
    """The same SOP Instance UID with another patient and other pixels."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientName = "Tampered^Name"
    ds.PixelData = np.full((ds.Rows, ds.Columns), 4242, dtype=np.int16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- HTTP


def test_rest_and_dicomweb_need_the_credentials(locked: LocalOrthanc) -> None:
    instances = make_mr_series(2, patient_id="LOCK-REST", seed=41)
    study, _, _ = uids(instances[0])
    assert len(locked.dicomweb().store_instances(instances).stored_sop_instance_uids) == 2
    rest = locked.rest()
    study_id = rest.find_study(study)
    assert study_id

    wrong = (locked.username, "not-the-password")
    for auth in (None, wrong, ("orthanc", "orthanc")):  # nothing, a wrong password, Orthanc's well-known default
        with httpx.Client(base_url=locked.url, auth=auth, timeout=10) as anonymous:
            assert anonymous.get("/studies").status_code == 401
            assert anonymous.get("/system").status_code == 401
            assert anonymous.get(f"/studies/{study_id}").status_code == 401
            assert anonymous.delete(f"/studies/{study_id}").status_code == 401
            assert anonymous.put(f"/studies/{study_id}/metadata/1024", content=b"x").status_code == 401
            modify = {"Replace": {"PatientName": "X"}}
            assert anonymous.post(f"/studies/{study_id}/modify", json=modify).status_code == 401
            assert anonymous.post("/instances", content=instances[0]).status_code == 401
            assert anonymous.get("/dicom-web/studies", headers={"Accept": "application/dicom+json"}).status_code == 401
            body, content_type = encode_multipart_related(instances[:1])
            stow = anonymous.post("/dicom-web/studies", content=body, headers={"Content-Type": content_type})
            assert stow.status_code == 401
    assert rest.find_study(study) == study_id  # still there, unchanged

    with locked.client(timeout=10) as client:
        assert study_id in client.get("/studies").json()
        assert client.delete(f"/studies/{study_id}").status_code == 200
    assert rest.find_study(study) is None


def test_the_password_is_random_and_stays_out_of_files_others_can_read(locked: LocalOrthanc, tmp_path: Path) -> None:
    a, b = LocalOrthanc(tmp_path / "a"), LocalOrthanc(tmp_path / "b")
    assert a.auth[1] != b.auth[1] and len(a.auth[1]) >= 32
    assert a.auth[1] not in repr(a) and a.auth[1] not in str(a.settings_values["orthanc_url"])
    assert locked.work_dir is not None
    config = locked.work_dir / "orthanc.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert locked.auth[1] not in locked.log_path.read_text()


def test_settings_keep_credentials_out_of_the_urls() -> None:
    settings = CommonSettings(service_token="t-0123456789abcdefghijklmnopqrstuvwxyz", orthanc_url="http://glioscope:s3cret%2Fpw@orthanc:8042",
                              dicomweb_url="http://glioscope:s3cret%2Fpw@orthanc:8042/dicom-web")
    assert settings.orthanc_url == "http://orthanc:8042" and settings.dicomweb_url == "http://orthanc:8042/dicom-web"
    assert settings.orthanc_auth == ("glioscope", "s3cret/pw")
    assert "s3cret" not in repr(settings)
    explicit = CommonSettings(service_token="t-0123456789abcdefghijklmnopqrstuvwxyz", orthanc_url="http://u:old@orthanc:8042", orthanc_username="svc",
                              orthanc_password="new")
    assert explicit.orthanc_auth == ("svc", "new") and explicit.orthanc_url == "http://orthanc:8042"
    assert CommonSettings(service_token="t-0123456789abcdefghijklmnopqrstuvwxyz").orthanc_auth is None  # no default password


# --------------------------------------------------------------------------------------------- DICOM


def test_cstore_only_from_a_configured_modality(locked: LocalOrthanc, tmp_path: Path) -> None:
    rest = locked.rest()

    def refused(instances: list[bytes], calling: str, called: str | None = None) -> str:
        study, _, _ = uids(instances[0])
        result = storescu(locked, write(tmp_path / calling / (called or "ok"), instances), calling, called)
        assert result.returncode != 0, result.stderr
        assert rest.find_study(study) is None
        return result.stderr

    # the dcmtk default AET, any unknown AET, a configured AET from the wrong address, the wrong called AET
    assert "Calling AE Title Not Recognized" in refused(make_mr_series(1, seed=42), "STORESCU")
    assert "Calling AE Title Not Recognized" in refused(make_mr_series(1, seed=43), "ANY-MODALITY")
    assert "Calling AE Title Not Recognized" in refused(make_mr_series(1, seed=44), "CT-ELSEWHERE")
    assert "Called AE Title Not Recognized" in refused(make_mr_series(1, seed=45), LOCAL_SCU_AET, "ORTHANC")

    instances = make_mr_series(2, patient_id="LOCK-CSTORE", seed=46)
    result = storescu(locked, write(tmp_path / "configured", instances), LOCAL_SCU_AET)
    assert result.returncode == 0, result.stderr
    study, series, _ = uids(instances[0])
    assert len(locked.dicomweb().search_instances(study, series)) == 2

    if shutil.which("echoscu"):  # C-ECHO: from the configured modality only
        echo = ["echoscu", "-aec", locked.aet, "127.0.0.1", str(locked.dicom_port)]
        assert subprocess.run([*echo, "-aet", LOCAL_SCU_AET], capture_output=True, timeout=30).returncode == 0
        assert subprocess.run([*echo, "-aet", "STORESCU"], capture_output=True, timeout=30).returncode != 0


def test_the_configuration_is_the_locked_down_one(locked: LocalOrthanc) -> None:
    assert locked.work_dir is not None
    config = locked.config(locked.work_dir)
    assert config["AuthenticationEnabled"] is True and config["RemoteAccessAllowed"] is False
    assert config["RegisteredUsers"] == {locked.username: locked.auth[1]}
    assert config["OverwriteInstances"] is False
    assert config["DicomCheckModalityHost"] is True and config["DicomCheckCalledAet"] is True
    for option in ("Store", "Echo", "Find", "FindWorklist", "Get", "Move"):
        assert config[f"DicomAlwaysAllow{option}"] is False, option
    modalities = config["DicomModalities"]
    assert isinstance(modalities, dict)
    assert modalities["local-scu"] == {
        "AET": LOCAL_SCU_AET, "Host": "127.0.0.1", "Port": 104, "AllowEcho": True, "AllowStore": True,
        "AllowFind": False, "AllowFindWorklist": False, "AllowGet": False, "AllowMove": False, "AllowStorageCommitment": False,
    }
    # The running Orthanc has the chart's duplicate audit script (one file for both).
    chart_script = (ROOT / "charts/glioscope/files/orthanc/duplicate-audit.lua").read_text()
    assert ORTHANC_DUPLICATE_AUDIT_LUA.read_text() == chart_script
    assert config["LuaScripts"] == [str(locked.work_dir / "duplicate-audit.lua")]
    assert (locked.work_dir / "duplicate-audit.lua").read_text() == chart_script


@pytest.mark.parametrize("spec", [
    {"x": {"AET": "", "Host": "127.0.0.1"}},
    {"x": {"AET": "SEVENTEEN-CHARS-X", "Host": "127.0.0.1"}},
    {"x": {"AET": "CT", "Host": "ct.hospital.example"}},  # Orthanc compares addresses, not names
    {"x": {"AET": "CT", "Host": "10.0.0.1", "Port": 0}},
    {"x": {"AET": "CT", "Host": "10.0.0.1", "AllowEverything": True}},
])
def test_a_bad_modality_is_refused_before_orthanc_starts(spec: dict) -> None:
    with pytest.raises(ValueError, match="DICOM modality"):
        orthanc_modalities(spec)


def test_modality_forms() -> None:
    assert orthanc_modalities({"mr": ["MR-3T", "10.1.2.3", 11112]})["mr"]["Port"] == 11112
    lower_case = orthanc_modalities({"mr": {"aet": "MR-3T", "host": "10.1.2.3", "allowfind": True}})
    assert lower_case["mr"]["AllowFind"] is True


# --------------------------------------------------------------------------------------------- overwrite


def test_a_second_copy_changes_nothing_served_and_is_logged(orthanc: LocalOrthanc, secure_gateway: TestClient,
                                                            tmp_path: Path) -> None:
    gateway = secure_gateway  # the gateway in process against `orthanc` (conftest.py)
    instances = make_mr_series(2, patient_id="LOCK-OVERWRITE", seed=47)
    study, series, sop = uids(instances[0])
    assert storescu(orthanc, write(tmp_path / "original", instances), LOCAL_SCU_AET).returncode == 0
    original = orthanc.dicomweb().retrieve_instance(study, series, sop)

    # The same SOP Instance UID, tampered, by C-STORE (from the configured modality) and by STOW-RS.
    fake = tampered(instances[0])
    result = storescu(orthanc, write(tmp_path / "tampered", [fake]), LOCAL_SCU_AET)
    assert result.returncode == 0, result.stderr  # Orthanc answers success to the sender, keeps its copy
    stow = orthanc.dicomweb().store_instances([fake])
    assert stow.stored_sop_instance_uids == [sop] and not stow.failed_sop_instance_uids
    body, content_type = encode_multipart_related([fake])
    via_gateway = gateway.post(f"/dicom-web/studies/{study}", content=body,
                               headers={"content-type": content_type, "accept": "application/dicom+json"})
    assert via_gateway.status_code == 200, via_gateway.text

    served = orthanc.dicomweb().retrieve_instance(study, series, sop)
    assert str(served.PatientName) == "Test^Glioscope" and served.PixelData == original.PixelData
    metadata = gateway.get(f"/dicom-web/studies/{study}/series/{series}/metadata").json()
    assert {dicom_json_value(m, "PatientName") for m in metadata} == {"Test^Glioscope"}
    frames = gateway.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}",
                         headers={"accept": f"{MULTIPART_DICOM}; transfer-syntax=*"})
    assert frames.status_code == 200 and original.PixelData in frames.content
    assert b"Tampered" not in frames.content

    # Not silent: each discarded copy is in Orthanc's log with where it came from (UIDs only, no names).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = orthanc.log_path.read_text().splitlines()
        audit = [line for line in lines if "GLIOSCOPE-AUDIT" in line and sop in line]
        if len(audit) >= 3:
            break
        time.sleep(0.2)
    assert len(audit) == 3, audit
    assert any(f"remote_aet={LOCAL_SCU_AET}" in line and "remote_ip=127.0.0.1" in line for line in audit)
    assert sum("origin=Plugins" in line for line in audit) == 2  # STOW-RS, directly and through the gateway
    assert not any("Tampered" in line or "Test^Glioscope" in line for line in audit)

    # New instances (a new SEG version has new UIDs) are still stored.
    new = make_mr_series(1, study_uid=study, patient_id="LOCK-OVERWRITE", seed=48)
    assert orthanc.dicomweb().store_instances(new).stored_sop_instance_uids == [uids(new[0])[2]]
    assert len(orthanc.dicomweb().search_series(study)) == 2
