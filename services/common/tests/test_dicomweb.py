"""DICOMweb client: HttpDicomWeb against a real Orthanc, FileDicomWeb on a folder, the multipart codec."""

from __future__ import annotations

import io
import socket
import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.dicomweb.files import FileDicomWeb
from glioscope_common.dicomweb.multipart import encode_multipart_related, parse_multipart_related
from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.dicomweb.protocol import DicomWeb, dicom_json_value
from glioscope_common.errors import NotFound, UpstreamUnavailable
from glioscope_common.dev.testing import make_mr_series


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


# --------------------------------------------------------------------------------------------- unit


def test_multipart_round_trip_is_linear_and_exact() -> None:
    parts = [b"\r\n--x" * 3, b"", bytes(range(256)) * 1000, b"plain"]
    body, content_type = encode_multipart_related(parts)
    assert parse_multipart_related(body, content_type) == parts
    many = [bytes([i % 256]) * 120_000 for i in range(155)]
    body, content_type = encode_multipart_related(many)
    started = time.perf_counter()
    assert parse_multipart_related(body, content_type) == many
    assert time.perf_counter() - started < 1.0


def test_parse_multipart_with_quoted_boundary_and_preamble() -> None:
    body = b"preamble\r\n--b0\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b0\r\nContent-Type: application/dicom\r\n\r\nBB\r\n--b0--\r\n"
    assert parse_multipart_related(body, 'multipart/related; type="application/dicom"; boundary="b0"') == [b"AAA", b"BB"]


def test_dicom_json_value() -> None:
    item = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00080061": {"vr": "CS", "Value": ["MR", "SEG"]},
        "00081030": {"vr": "LO"},
    }
    assert dicom_json_value(item, "StudyInstanceUID") == "1.2.3"
    assert dicom_json_value(item, "0020000d") == "1.2.3"
    assert dicom_json_value(item, "(0020,000D)") == "1.2.3"
    assert dicom_json_value(item, "PatientName") == "Doe^Jane"
    assert dicom_json_value(item, "ModalitiesInStudy") == ["MR", "SEG"]
    assert dicom_json_value(item, "StudyDescription") is None
    assert dicom_json_value(item, "SeriesInstanceUID") is None
    with pytest.raises(ValueError):
        dicom_json_value(item, "NoSuchKeyword")


def test_file_dicomweb_round_trip(tmp_path) -> None:
    client = FileDicomWeb(tmp_path)
    assert isinstance(client, DicomWeb)
    instances = make_mr_series(3, patient_id="FILE-1")
    study, series, _ = _uids(instances[0])
    result = client.store_instances(instances)
    assert sorted(result.stored_sop_instance_uids) == sorted(_uids(i)[2] for i in instances)
    assert not result.failed_sop_instance_uids
    assert (tmp_path / study / series).is_dir()

    studies = client.search_studies(PatientID="FILE-1")
    assert [dicom_json_value(s, "StudyInstanceUID") for s in studies] == [study]
    assert dicom_json_value(studies[0], "ModalitiesInStudy") == "MR"
    assert client.search_studies(PatientID="NOBODY") == []
    assert client.search_studies(PatientID="FILE-*")
    assert [dicom_json_value(s, "SeriesInstanceUID") for s in client.search_series(study)] == [series]
    assert len(client.search_instances(study, series)) == 3
    metadata = client.retrieve_series_metadata(study, series)
    assert len(metadata) == 3 and "7FE00010" not in metadata[0]
    original = {(d := pydicom.dcmread(io.BytesIO(i))).SOPInstanceUID: d.PixelData for i in instances}
    for ds in client.retrieve_series(study, series):
        assert ds.PixelData == original[ds.SOPInstanceUID]
    sop = _uids(instances[1])[2]
    assert client.retrieve_instance(study, series, sop).PixelData == original[sop]
    with pytest.raises(NotFound):
        client.retrieve_instance(study, series, "1.2.3.4")
    # storing again overwrites (idempotent)
    assert len(client.store_instances(instances).stored_sop_instance_uids) == 3
    # a study-scoped STOW refuses instances of another study
    other = client.store_instances(make_mr_series(1), study_instance_uid=study)
    assert other.failed_sop_instance_uids and not other.stored_sop_instance_uids


def test_http_dicomweb_raises_upstream_unavailable_quickly_on_a_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpDicomWeb(f"http://127.0.0.1:{port}/dicom-web", timeout=2, retry_wait=0.05)
    started = time.perf_counter()
    with pytest.raises(UpstreamUnavailable):
        client.search_studies()
    assert time.perf_counter() - started < 3
    with pytest.raises(UpstreamUnavailable):
        OrthancRest(f"http://127.0.0.1:{port}", timeout=2, retry_wait=0.05).statistics()


# --------------------------------------------------------------------------------------------- Orthanc


@pytest.mark.services
def test_refused_credentials_are_an_upstream_fault_that_names_the_settings(orthanc) -> None:
    for auth in (None, (orthanc.username, "wrong-password")):
        with pytest.raises(UpstreamUnavailable, match="GLIOSCOPE_ORTHANC_PASSWORD") as caught:
            HttpDicomWeb(orthanc.dicomweb_url, auth=auth, attempts=1).search_studies()
        assert orthanc.auth[1] not in str(caught.value)
        with pytest.raises(UpstreamUnavailable, match="401"):
            OrthancRest(orthanc.url, auth=auth, attempts=1).statistics()


@pytest.fixture()
def dicomweb(orthanc) -> HttpDicomWeb:
    client = orthanc.dicomweb(timeout=30)
    yield client
    client.close()


@pytest.mark.services
def test_stow_qido_wado_against_orthanc(dicomweb: HttpDicomWeb, orthanc) -> None:
    instances = make_mr_series(4, patient_id="HTTP-1", seed=1)
    study, series, _ = _uids(instances[0])
    result = dicomweb.store_instances(instances)
    assert sorted(result.stored_sop_instance_uids) == sorted(_uids(i)[2] for i in instances)
    assert result.failed_sop_instance_uids == []

    studies = dicomweb.search_studies(PatientID="HTTP-1")
    assert [dicom_json_value(s, "StudyInstanceUID") for s in studies] == [study]
    assert dicomweb.search_studies(PatientID="NOBODY") == []
    found = dicomweb.search_series(study)
    assert [dicom_json_value(s, "SeriesInstanceUID") for s in found] == [series]
    assert dicom_json_value(found[0], "Modality") == "MR"
    assert len(dicomweb.search_instances(study, series)) == 4

    metadata = dicomweb.retrieve_series_metadata(study, series)
    assert len(metadata) == 4
    assert {dicom_json_value(m, "InstanceNumber") for m in metadata} == {1, 2, 3, 4}
    assert dicom_json_value(metadata[0], "PixelSpacing") == [1.0, 1.0]

    original = {(d := pydicom.dcmread(io.BytesIO(i))).SOPInstanceUID: d for i in instances}
    retrieved = dicomweb.retrieve_series(study, series)
    assert len(retrieved) == 4
    for ds in retrieved:
        assert ds.PixelData == original[ds.SOPInstanceUID].PixelData
        assert np.array_equal(ds.pixel_array, original[ds.SOPInstanceUID].pixel_array)
    sop = _uids(instances[2])[2]
    assert dicomweb.retrieve_instance(study, series, sop).SOPInstanceUID == sop
    with pytest.raises(NotFound):
        dicomweb.retrieve_series(study, "1.2.3.999")

    rest = orthanc.rest()
    orthanc_id = rest.find_study(study)
    assert orthanc_id and rest.study_dicom_uid(orthanc_id) == study
    assert rest.statistics()["CountInstances"] >= 4
    assert rest.find_study("1.2.3.4.5.6.7") is None


@pytest.mark.services
def test_stow_batches_and_study_scoped_store(orthanc) -> None:
    client = orthanc.dicomweb(max_instances_per_request=3)
    study = generate_uid()
    instances = make_mr_series(7, study_uid=study, patient_id="BATCH-1", seed=2)
    result = client.store_instances(instances, study_instance_uid=study)
    assert len(result.stored_sop_instance_uids) == 7
    _, series, _ = _uids(instances[0])
    assert len(client.retrieve_series(study, series)) == 7
    rest = orthanc.rest()
    rest.delete_study(rest.find_study(study))
    assert rest.find_study(study) is None
    with pytest.raises(NotFound):
        client.retrieve_series_metadata(study, series)
    client.close()


@pytest.mark.services
def test_retrieve_155_instance_series_is_fast(dicomweb: HttpDicomWeb, orthanc) -> None:
    instances = make_mr_series(155, size=240, patient_id="BIG-1", seed=3)
    study, series, _ = _uids(instances[0])
    started = time.perf_counter()
    assert len(dicomweb.store_instances(instances).stored_sop_instance_uids) == 155
    stow_s = time.perf_counter() - started
    started = time.perf_counter()
    datasets = dicomweb.retrieve_series(study, series)
    wado_s = time.perf_counter() - started
    assert len(datasets) == 155
    print(f"STOW 155 x 240x240: {stow_s:.2f} s, WADO-RS series: {wado_s:.2f} s")
    assert wado_s < 10
    rest = orthanc.rest()
    rest.delete_study(rest.find_study(study))
