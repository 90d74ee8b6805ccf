"""LLM polishing against a real local OpenAI-compatible HTTP server (http.server in a thread, on a free port)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from glioscope_common.measurements import Measurements
from glioscope_reporting.main import create_app
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.llm import allowed_numbers, unsupported_numbers
from glioscope_reporting.reports.schemas import ModelInfo
from glioscope_reporting.settings import Settings

from .conftest import TOKEN, as_user, records_db, worker_auth


class FakeLlm:
    """Answers POST /v1/chat/completions in the OpenAI format; `mode` chooses the answer."""

    def __init__(self) -> None:
        self.mode = "faithful"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if fake.mode == "slow":
                    time.sleep(2.0)
                draft = json.loads(body["messages"][-1]["content"])["draft"]
                answer = {k: "As reviewed: " + v for k, v in draft.items()}
                if fake.mode == "wrong_number":
                    answer["findings"] = answer["findings"].replace("45.4 mL", "54.9 mL")
                if fake.mode == "drop_warning":
                    answer["findings"] = answer["findings"].split(" Input quality:")[0]
                if fake.mode == "wrong_side":
                    answer["impression"] = answer["impression"].replace("left", "right")
                content = json.dumps(answer)
                if fake.mode == "garbage":
                    content = "I cannot help with that."
                payload = json.dumps(
                    {"id": "x", "object": "chat.completion", "model": body["model"],
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeLlm":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    with FakeLlm() as server:
        yield server


@pytest.fixture
def llm_client(llm: FakeLlm, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        environment="test", database_url=records_db(tmp_path / 'llm.db'), service_token=TOKEN, store_on_sign=False,
        llm_url=llm.url, llm_model="tiny-test-model", llm_api_key="sk-test", llm_timeout_s=0.5,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _post(client: TestClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/reports", data={"payload": json.dumps(payload)}, headers=worker_auth())
    assert response.status_code == 201, response.text
    return response.json()


def _deterministic(payload: dict[str, Any]) -> dict[str, str]:
    return draft_sections(Measurements.model_validate(payload["measurements"]), ModelInfo(**payload["model"])).model_dump()


def test_faithful_answer_is_used_and_marked(llm: FakeLlm, llm_client: TestClient, payload_factory, tmp_path: Path) -> None:
    payload = payload_factory()
    report = _post(llm_client, payload)
    assert report["ai_drafted"] is True
    assert report["ai_sections"] == {"findings": True, "impression": True, "diagnosis": True, "recommendations": True}
    draft = _deterministic(payload)
    assert report["sections"] == {k: "As reviewed: " + v for k, v in draft.items()}
    assert llm.requests[0]["model"] == "tiny-test-model"
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"

    # The PDF marks the AI-drafted sections.
    import subprocess

    pdf = llm_client.get(f"/api/reports/{report['id']}/pdf", headers=worker_auth()).content
    (tmp_path / "r.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True).stdout
    assert text.count("[AI-drafted]") >= 4

    # A human edit of a section clears its mark.
    edited = llm_client.put(
        f"/api/reports/{report['id']}/sections/findings", json={"text": "Edited by hand."},
        headers=as_user("dr.smith", "radiologist"),
    ).json()
    assert edited["ai_sections"]["findings"] is False and edited["ai_sections"]["impression"] is True
    assert edited["ai_drafted"] is True


def test_no_phi_in_the_prompt(llm: FakeLlm, llm_client: TestClient, payload_factory) -> None:
    payload = payload_factory()
    _post(llm_client, payload)
    # a follow-up study of the same patient (prior comparison in the draft) must not leak dates either
    follow_up = payload_factory(study_instance_uid="1.2.826.0.1.3680043.8.498.99", job_id="job-9",
                                study={"study_date": "20240915", "study_description": "Control scan XYZ", "accession_number": "ACC43"})
    report = _post(llm_client, follow_up)
    assert report["structured"]["comparison"] is not None
    assert len(llm.requests) == 2
    for request in llm.requests:
        sent = json.dumps(request)
        for phi in ["Doe", "Jane", "GLIO-0001", "19700101", "1970", "20240315", "2024-03-15", "20240915", "ACC42", "ACC43",
                    "MRI brain with contrast", "Control scan XYZ", "1.2.826.0.1.3680043.8.498", "job-1", "job-9"]:
            assert phi not in sent, phi
        content = json.loads(request["messages"][-1]["content"])
        assert set(content) == {"segmentation_model", "measurements", "draft"}


def test_wrong_number_falls_back(llm: FakeLlm, llm_client: TestClient, payload_factory) -> None:
    llm.mode = "wrong_number"
    payload = payload_factory()
    report = _post(llm_client, payload)
    assert len(llm.requests) == 1  # the server was asked and answered
    assert report["ai_drafted"] is False and not any(report["ai_sections"].values())
    assert report["sections"] == _deterministic(payload)
    assert "54.9" not in json.dumps(report["sections"])


def test_wrong_side_falls_back(llm: FakeLlm, llm_client: TestClient, payload_factory) -> None:
    llm.mode = "wrong_side"
    payload = payload_factory()
    report = _post(llm_client, payload)
    assert report["ai_drafted"] is False and report["sections"] == _deterministic(payload)


def test_timeout_and_garbage_fall_back(llm: FakeLlm, llm_client: TestClient, payload_factory) -> None:
    llm.mode = "slow"
    payload = payload_factory()
    started = time.perf_counter()
    report = _post(llm_client, payload)
    assert time.perf_counter() - started < 1.8  # llm_timeout_s=0.5, the server takes 2 s
    assert report["ai_drafted"] is False and report["sections"] == _deterministic(payload)
    llm.mode = "garbage"
    report = _post(llm_client, payload_factory(job_id="job-2"))
    assert report["ai_drafted"] is False and report["sections"] == _deterministic(payload)


def test_unreachable_endpoint_falls_back(tmp_path: Path, payload_factory) -> None:
    settings = Settings(environment="test", database_url=records_db(tmp_path / 'x.db'), service_token=TOKEN,
                        llm_url="http://127.0.0.1:9/v1", llm_model="m", llm_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        report = _post(client, payload_factory())
    assert report["ai_drafted"] is False


def test_number_check() -> None:
    m = Measurements.model_validate(
        {"label_volumes": [{"label": 1, "name": "necrotic core", "volume_ml": 8.14}],
         "region_volumes_ml": {"WT": 45.44, "TC": 20.17, "ET": 12.03}, "max_axial_diameter_mm": 52.34,
         "perpendicular_diameter_mm": 38.06, "bidimensional_product_mm2": 1992.06, "centroid_ras_mm": [-30.21, 12.5, 20.04],
         "hemisphere": "left", "tumour_detected": True}
    )
    draft = draft_sections(m, ModelInfo(name="glioscope_unet", version="1.2.0"))
    allowed = allowed_numbers(m, draft, "glioscope_unet")
    assert unsupported_numbers("WT 45.4 mL, 45.44 mL, about 45 mL; product 1,992.1 mm²", allowed) == []
    assert unsupported_numbers("30.2 mm left of midline", allowed) == ["30.2"]  # a scanner coordinate
    assert unsupported_numbers("WT 45.6 mL", allowed) == ["45.6"]
    assert unsupported_numbers("a 7 cm lesion", allowed) == ["7"]
    assert unsupported_numbers("grew by 12.5 %", allowed) == ["12.5"]  # a scanner coordinate is not given to the LLM


def test_input_warnings_survive_polishing(llm: FakeLlm, llm_client: TestClient, payload_factory) -> None:
    payload = payload_factory()
    warning = "The images do not look skull-stripped (6.0 L of image foreground)."
    payload["measurements"]["input_warnings"] = [warning]
    llm.mode = "drop_warning"  # an answer that leaves the warning out
    report = _post(llm_client, payload)
    assert report["ai_drafted"] is True
    assert report["sections"]["findings"].endswith(f"Input quality: {warning}")
    assert report["sections"]["findings"].count(warning) == 1
