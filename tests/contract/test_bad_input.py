"""The bad-input corpus (tests/data/bad/make_cases.py) against the gateway and the NIfTI service: every
case gets its defined status with a clear message, nothing is stored (database, PACS, dataset
folder), and the services stay up."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.orthanc import LocalOrthanc

from .conftest import ADMIN, load_make_cases

pytestmark = pytest.mark.services

make_cases = load_make_cases()
CASES = make_cases.make_cases(Path(__file__).resolve().parents[1] / "data" / "bad" / "cases")
CASE_DIR = Path(__file__).resolve().parents[1] / "data" / "bad" / "cases"


def test_the_corpus_is_big_enough_and_small() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    # every refused case names the reason it must be refused for (an empty message matches any refusal)
    assert not [c.id for c in CASES if any(code >= 400 for code in c.expect) and not c.message.strip()]
    assert all(p.stat().st_size <= make_cases.MAX_CASE_BYTES for p in CASE_DIR.iterdir() if p.name != "manifest.json")


def orthanc_studies(orthanc: LocalOrthanc) -> set[str]:
    with orthanc.client(timeout=10) as client:
        return set(client.get("/studies").json())


def nifti_files(root: Path) -> set[str]:
    return {p.as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, contract_gateway: TestClient, nifti_service: tuple[TestClient, Path],  # type: ignore[no-untyped-def]
                   orthanc: LocalOrthanc) -> None:
    nifti, nifti_root = nifti_service
    client = contract_gateway if case.service == "gateway" else nifti
    before_pacs = orthanc_studies(orthanc)
    before_files = nifti_files(nifti_root)
    files = [("files", (u.filename, (CASE_DIR / u.file).read_bytes(), u.content_type))
             for u in case.uploads for _ in range(u.repeat)]
    kwargs: dict[str, object] = {"params": case.params}
    if files:
        kwargs["files"] = files
    if case.form:
        kwargs["data"] = case.form
    if case.json_body is not None:
        kwargs["json"] = case.json_body
    if case.body_file:
        kwargs["content"] = (CASE_DIR / case.body_file).read_bytes()
    if case.method == "POST" and not files and not case.form:
        kwargs["content"] = b""
    if case.admin:
        token = client.post("/api/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}).json()["access_token"]
        kwargs["headers"] = {"authorization": f"Bearer {token}", "x-api-key": ""}
    response = client.request(case.method, case.path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code in case.expect, (case.id, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code >= 400:
        assert body["error"] and body["request_id"]
        assert case.message.lower() in str(body["detail"]).lower(), (case.id, body)
    else:
        assert body == []  # searches with injection strings find nothing and break nothing
    # Nothing stored anywhere; both services still answer.
    assert contract_gateway.get("/api/studies").json() == []
    assert orthanc_studies(orthanc) == before_pacs
    assert nifti_files(nifti_root) == before_files
    assert contract_gateway.get("/healthz").status_code == 200
    assert nifti.get("/healthz").status_code == 200
