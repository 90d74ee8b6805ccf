"""Findings 1 and 5: the DICOMweb proxy reaches nothing but DICOMweb, and only the caller's studies.

The paths are sent byte for byte to a real uvicorn serving the gateway (no client-side normalisation),
and the gateway forwards to a real Orthanc: an escape would answer Orthanc's own JSON."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_gateway.dicomweb_proxy.paths import NotARoute, parse_route
from glioscope_gateway.dicomweb_proxy.stow import parse_stow
from glioscope_gateway.main import create_app

from .conftest import RunningApp, gw

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"
INSTANCE = "1.2.826.0.1.3680043.8.498.3"

ROUTES = [
    ("GET", "studies"), ("GET", "series"), ("GET", "instances"), ("GET", "studies/"),
    ("GET", f"studies/{STUDY}"), ("GET", f"studies/{STUDY}/metadata"), ("GET", f"studies/{STUDY}/rendered"),
    ("GET", f"studies/{STUDY}/series"), ("GET", f"studies/{STUDY}/instances"),
    ("GET", f"studies/{STUDY}/series/{SERIES}"), ("GET", f"studies/{STUDY}/series/{SERIES}/metadata"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/metadata"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/frames/1"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/frames/1,2,3/rendered"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/bulk/7fe00010"),
    ("GET", f"studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/bulk/00540016/0/00181072"),
    ("POST", "studies"), ("POST", f"studies/{STUDY}"),
]

# Orthanc's own REST API, and ways to say "go up" in every encoding one level or several deep.
TARGETS = ["system", "tools/find", "patients", "studies", "instances", "changes", "tools/reset", "plugins"]
UPS = ["..", "%2e%2e", "%2E%2E", "%2e.", ".%2e", "%252e%252e", "%25252e%25252e", "%c0%ae%c0%ae", "%u002e%u002e",
       "%ef%bc%8e%ef%bc%8e", "..;", "..%00", "..%2f", "..%5c", "..\\", "%2e%2e%2f", "%252e%252e%252f", "."]
PREFIXES = ["", "studies/", f"studies/{STUDY}/", f"studies/{STUDY}/series/{SERIES}/", "series/", "instances/"]


def fuzz_paths() -> list[str]:
    paths = []
    for prefix, up, target in itertools.product(PREFIXES, UPS, ["system", "tools/find"]):
        paths.append(f"{prefix}{up}/{up}/{target}")
        paths.append(f"{prefix}{up}/{up}/{up}/{target}")
    paths += [f"../{t}" for t in TARGETS] + [f"%2e%2e/{t}" for t in TARGETS]
    paths += [f"studies/{STUDY}/../../{t}" for t in TARGETS] + [f"studies/{STUDY}%2f..%2f..%2f{t}" for t in TARGETS]
    paths += ["studies//system", "studies/%2fsystem", "studies/1.2.3%00/series", "studies/1.2.3;x=y/series",
              "studies/1.2.3/series/%2e%2e/%2e%2e/%2e%2e/system", "studies/%201.2.3", "studies/1.2.3/archive",
              "studies/1.2.3/series/1.2/instances/1.3/file", "studies/1.2.3/attachments", "series/1.2.3/metadata",
              "instances/1.2.3/frames/1", "studies/1.2.3/series/1.2/instances/1.3/frames/0",
              "studies/1.2.3/series/1.2/instances/1.3/bulk/../../..", f"studies/{'1' * 65}",
              "Studies", "STUDIES/1.2.3", "studies/1..2", "studies/.1.2", "studies/1.2."]
    return paths


@pytest.mark.parametrize("method,path", ROUTES)
def test_known_routes_parse(method: str, path: str) -> None:
    route = parse_route(path, method)
    assert route.path == path.rstrip("/")
    assert route.study_instance_uid == (STUDY if STUDY in path else None)


def test_every_fuzzed_path_is_not_a_route() -> None:
    for path, method in itertools.product(fuzz_paths(), ("GET", "POST")):
        with pytest.raises(NotARoute):
            parse_route(path, method)
            pytest.fail(f"{method} {path} parsed as a route")
    for method in ("PUT", "DELETE", "PATCH"):
        with pytest.raises(NotARoute):
            parse_route("studies", method)


ORTHANC_MARKERS = (b"DicomAet", b"ApiVersion", b"DatabaseVersion", b"StorageAreaPlugin", b"IsSaneBinary",
                   b'"ID"', b"MainDicomTags", b"LastUpdate", b"Changes")


def test_no_encoding_reaches_orthancs_api(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    """Every fuzzed path, sent raw as admin, is a 404 from the gateway; a real route still works."""
    settings = gw.gateway_settings(tmp_path, orthanc)
    with TestClient(create_app(settings), headers={"x-api-key": gw.SERVICE_KEY}) as client:
        uploaded = client.post("/api/studies", files=gw.as_files(gw.small_study(tmp_path / "s", seed=31)))
        assert uploaded.status_code == 201, uploaded.text
        admin = gw.bearer(gw.sign_in(client, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    uid = uploaded.json()["study"]["study_instance_uid"]
    headers = {"x-api-key": gw.SERVICE_KEY}
    with RunningApp(create_app(settings)) as app:
        status, body = app.raw("GET", f"/dicom-web/studies/{uid}/series", headers)
        assert status == 200 and len(json.loads(body)) == 4
        for path in fuzz_paths():
            for method in ("GET", "POST"):
                status, body = app.raw(method, f"/dicom-web/{path}", headers)
                assert status in (400, 404), (method, path, status, body[:200])
                assert not any(marker in body for marker in ORTHANC_MARKERS), (method, path, body[:300])
        # The original finding, as a signed-in admin.
        for method, path in [("POST", "/dicom-web/studies/%252e%252e/%252e%252e/tools/find"),
                             ("GET", "/dicom-web/studies/%252e%252e/%252e%252e/system"),
                             ("GET", "/dicom-web/studies/%2e%2e/%2e%2e/patients")]:
            status, body = app.raw(method, path, admin, b'{"Level":"Patient","Query":{}}' if method == "POST" else b"")
            assert status == 404 and b"no such DICOMweb resource" in body, (path, status, body)
    with TestClient(create_app(settings), headers=headers) as client:
        events = client.get("/api/admin/audit", params={"limit": 10000}, headers=admin)
        assert events.status_code == 200, events.text
        recorded = {e["study_instance_uid"] for e in events.json()}
        assert recorded <= {None, uid}, recorded  # no "%2e%2e" or other non-UID recorded as a study


def _instance_of(path: Path, **changes: str) -> bytes:
    dataset = pydicom.dcmread(path)
    for name, value in changes.items():
        setattr(dataset, name, value)
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, write_like_original=False)
    return buffer.getvalue()


def _with_two_study_uids(instance: bytes, first: str, second: str) -> bytes:
    """The instance with StudyInstanceUID `first`, followed by a second (0020,000D) element `second`."""
    def element(uid: str) -> bytes:
        value = uid.encode() + (b"\0" if len(uid) % 2 else b"")
        return b"\x20\x00\x0d\x00UI" + len(value).to_bytes(2, "little") + value

    dataset = pydicom.dcmread(io.BytesIO(instance))
    dataset.StudyInstanceUID = first
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    data = buffer.getvalue()
    start = data.index(element(first))
    end = start + len(element(first))
    return data[:end] + element(second) + data[end:]


def _stow_body(*instances: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + i + b"\r\n" for i in instances)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _count(client: TestClient, uid: str) -> int:
    response = client.get(f"/dicom-web/studies/{uid}/instances")
    return len(response.json()) if response.status_code == 200 else 0


def two_projects(gateway: TestClient, tmp_path: Path, seed: int) -> tuple[list[Path], list[Path], dict[str, str]]:
    """A study in project alpha, one in beta, and a radiologist of alpha only (her headers)."""
    own_files = gw.small_study(tmp_path / "a", seed=seed)
    other_files = gw.small_study(tmp_path / "b", seed=seed + 1)
    for files, project in ((own_files, "alpha"), (other_files, "beta")):
        assert gateway.post("/api/studies", files=gw.as_files(files), data={"project": project}).status_code == 201
    admin = gw.bearer(gw.sign_in(gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    created = gateway.post("/api/admin/users", headers=admin, json={
        "username": f"alice{seed}", "password": "alice-password-0123456", "role": "radiologist", "projects": ["alpha"]})
    assert created.status_code == 201, created.text
    return own_files, other_files, gw.bearer(gw.sign_in(gateway, f"alice{seed}", "alice-password-0123456")["access_token"])


def test_stow_into_another_projects_study_is_refused(secure_gateway: TestClient, tmp_path: Path) -> None:
    gateway = secure_gateway
    own_files, other_files, alice = two_projects(gateway, tmp_path, 41)
    own_uid = str(pydicom.dcmread(own_files[0]).StudyInstanceUID)
    other_uid = str(pydicom.dcmread(other_files[0]).StudyInstanceUID)
    before = _count(gateway, other_uid)
    tampered = _instance_of(other_files[0], PatientName="Tampered^Name")
    for path in ("/dicom-web/studies", f"/dicom-web/studies/{other_uid}"):
        body, content_type = _stow_body(tampered)
        response = gateway.post(path, content=body, headers={**alice, "content-type": content_type})
        assert response.status_code == 404, (path, response.text)
    # A body mixing her own study with another project's is refused as a whole (one study per request).
    body, content_type = _stow_body(_instance_of(own_files[0]), tampered)
    assert gateway.post("/dicom-web/studies", content=body, headers={**alice, "content-type": content_type}).status_code == 400
    # pydicom keeps the last of two StudyInstanceUID elements, DCMTK (Orthanc) the first: the gateway sends
    # the part to /studies/{the UID it read}, where Orthanc compares with its own reading and refuses it.
    smuggled = _with_two_study_uids(_instance_of(other_files[0], PatientName="Tampered^Name"), other_uid, own_uid)
    assert pydicom.dcmread(io.BytesIO(smuggled)).StudyInstanceUID == own_uid
    own_before = _count(gateway, own_uid)
    body, content_type = _stow_body(smuggled)
    response = gateway.post("/dicom-web/studies", content=body, headers={**alice, "content-type": content_type})
    assert response.status_code != 200, response.text
    assert _count(gateway, own_uid) == own_before
    # A UID with a space in it (DCMTK drops it and would store into another study), or two values: 400.
    for bad_uid in (other_uid[:6] + " " + other_uid[6:], f"{own_uid}\\{other_uid}"):
        body, content_type = _stow_body(_instance_of(own_files[0], StudyInstanceUID=bad_uid))
        assert gateway.post("/dicom-web/studies", content=body, headers={**alice, "content-type": content_type}).status_code == 400
    # Orthanc's `_method=` override is no DICOMweb parameter.
    assert gateway.get(f"/dicom-web/studies/{own_uid}/series", params={"_method": "DELETE"}, headers=alice).status_code == 400
    # A body whose boundary hides a second part from a naive parser is parsed the same way here.
    body, content_type = _stow_body(_instance_of(own_files[0]))
    assert gateway.post(f"/dicom-web/studies/{own_uid}", content=body + b"--b0undary\r\n\r\n" + tampered,
                        headers={**alice, "content-type": content_type}).status_code in (200, 400, 422)
    assert _count(gateway, other_uid) == before
    # Into her own study, and a new study: stored.
    own_before = _count(gateway, own_uid)
    body, content_type = _stow_body(_instance_of(own_files[0]))
    stored = gateway.post(f"/dicom-web/studies/{own_uid}", content=body, headers={**alice, "content-type": content_type})
    assert stored.status_code == 200, stored.text
    assert _count(gateway, own_uid) >= own_before + 1
    new_uid = generate_uid()
    body, content_type = _stow_body(_instance_of(own_files[0], StudyInstanceUID=new_uid, SeriesInstanceUID=generate_uid()))
    assert gateway.post("/dicom-web/studies", content=body, headers={**alice, "content-type": content_type}).status_code == 200
    assert _count(gateway, new_uid) == 1
    # A part of her own study sent to /studies/{another uid}, or something that is not DICOM: 4xx.
    body, content_type = _stow_body(_instance_of(own_files[0]))
    assert gateway.post(f"/dicom-web/studies/{new_uid}", content=body,
                        headers={**alice, "content-type": content_type}).status_code == 400
    body, content_type = _stow_body(b"not dicom at all")
    assert gateway.post("/dicom-web/studies", content=body, headers={**alice, "content-type": content_type}).status_code == 400


def test_stow_parser_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    files = gw.small_study(tmp_path / "p", seed=43)
    instance = _instance_of(files[0])
    body, content_type = _stow_body(instance, instance)
    parsed = parse_stow(body, content_type)
    assert len(parsed.parts) == 2 and parsed.study_instance_uids == {str(pydicom.dcmread(files[0]).StudyInstanceUID)}
    encoded, encoded_type = parsed.encode()
    assert parse_stow(encoded, encoded_type).parts == parsed.parts
    from glioscope_common.errors import InvalidInput

    for bad_body, bad_type in [
        (body, "multipart/related; boundary=other"),  # the parts are not where the boundary says
        (body, "application/dicom"),
        (body, 'multipart/related; type="application/dicom+json"; boundary=b0undary'),
        (body.replace(b"Content-Type: application/dicom", b"Content-Type: application/json", 1), content_type),
        (body[: len(body) // 2], content_type),  # no closing boundary
    ]:
        with pytest.raises(InvalidInput):
            parse_stow(bad_body, bad_type)


def test_another_projects_series_is_not_reachable_below_ones_own_study(secure_gateway: TestClient, tmp_path: Path) -> None:
    """WADO-RS names a study and a series: a series of another project's study, put below one's own
    study UID, must not be answered."""
    gateway = secure_gateway
    own_files, other_files, bob = two_projects(gateway, tmp_path, 51)
    own_uid = str(pydicom.dcmread(own_files[0]).StudyInstanceUID)
    other = pydicom.dcmread(other_files[0])
    series, instance = str(other.SeriesInstanceUID), str(other.SOPInstanceUID)
    for path in (f"studies/{own_uid}/series/{series}", f"studies/{own_uid}/series/{series}/metadata",
                 f"studies/{own_uid}/series/{series}/instances", f"studies/{own_uid}/series/{series}/instances/{instance}",
                 f"studies/{own_uid}/series/{series}/instances/{instance}/metadata",
                 f"studies/{own_uid}/series/{series}/instances/{instance}/frames/1"):
        response = gateway.get(f"/dicom-web/{path}", headers=bob)
        if path.endswith("/instances") and response.status_code == 200:  # a QIDO-RS search: nothing found
            assert response.json() == [], (path, response.text[:300])
        else:
            assert response.status_code in (204, 400, 404), (path, response.status_code)
        assert other.PatientID.encode() not in response.content and b"Small^Study" not in response.content, path
    # QIDO-RS with the other study's UID as a filter: filtered out.
    for root in ("series", "instances"):
        found = gateway.get(f"/dicom-web/{root}", params={"StudyInstanceUID": str(other.StudyInstanceUID)}, headers=bob)
        assert found.status_code in (200, 204) and (found.status_code == 204 or found.json() == []), found.text


def test_a_pacs_that_refuses_the_gateway_is_a_503_not_an_expired_session(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    from pydantic import SecretStr

    settings = gw.gateway_settings(tmp_path, orthanc, orthanc_password=SecretStr("not-the-orthanc-password-0123"))
    with TestClient(create_app(settings), headers={"x-api-key": gw.SERVICE_KEY}) as client:
        response = client.get("/dicom-web/studies")
        assert response.status_code == 503, response.text
        assert "GLIOSCOPE_ORTHANC_PASSWORD" in response.json()["detail"]
        assert "not-the-orthanc-password" not in response.text


def test_a_restricted_search_pages_after_the_project_filter(secure_gateway: TestClient, tmp_path: Path) -> None:
    """limit/offset count the caller's studies only (Orthanc's would count every project's)."""
    gateway = secure_gateway
    own_files, other_files, carol = two_projects(gateway, tmp_path, 61)
    extra = gw.small_study(tmp_path / "c", seed=63)
    assert gateway.post("/api/studies", files=gw.as_files(extra), data={"project": "alpha"}).status_code == 201
    mine = {str(pydicom.dcmread(f[0]).StudyInstanceUID) for f in (own_files, extra)}
    pages = []
    for offset in (0, 1, 2):
        response = gateway.get("/dicom-web/studies", params={"limit": 1, "offset": offset}, headers=carol)
        assert response.status_code == 200, response.text
        pages.append([item["0020000D"]["Value"][0] for item in response.json()])
    assert [len(p) for p in pages] == [1, 1, 0] and {p[0] for p in pages[:2]} == mine
    assert gateway.get("/dicom-web/studies", params={"limit": "x"}, headers=carol).status_code == 400


def test_metadata_links_point_at_the_gateway_not_the_pacs(secure_gateway: TestClient, tmp_path: Path, orthanc: LocalOrthanc) -> None:
    """Orthanc writes BulkDataURI from the Forwarded header the gateway sends: a viewer following the
    links stays on the gateway (and its access control) and never learns the PACS's address."""
    files = gw.small_study(tmp_path / "m", seed=71)
    assert secure_gateway.post("/api/studies", files=gw.as_files(files)).status_code == 201
    first = pydicom.dcmread(files[0])
    path = f"/dicom-web/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}/metadata"
    body = secure_gateway.get(path, headers={"host": "viewer.hospital.example"}).text
    assert "http://viewer.hospital.example/dicom-web/studies/" in body, body[:500]
    assert orthanc.url.split("//", 1)[1] not in body
    # A Host header that is not a host name is not passed on.
    assert secure_gateway.get(path, headers={"host": "evil;proto=x"}).status_code == 200


def test_a_get_is_sent_again_when_the_pacs_drops_the_connection(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    """A connection the PACS closes without an answer (a stale keep-alive connection) costs the viewer
    a frame unless the idempotent GET is sent again; a STOW-RS body is never sent twice."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        for n in range(3):
            connection, _ = listener.accept()
            with connection:
                request = connection.recv(65536).decode("latin-1")
                seen.append(request.split(" ", 2)[0])
                if n == 0:
                    continue  # closed without an answer
                body = b"[]"
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nConnection: close\r\n"
                                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings = gw.gateway_settings(tmp_path, orthanc, dicomweb_url=f"http://127.0.0.1:{port}/dicom-web")
    with TestClient(create_app(settings), headers={"x-api-key": gw.SERVICE_KEY}) as client:
        response = client.get("/dicom-web/studies")
        assert response.status_code == 200 and response.json() == [], response.text
        assert seen == ["GET", "GET"]
    listener.close()
