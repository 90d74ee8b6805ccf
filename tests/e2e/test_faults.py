"""Faults on the production configuration (Postgres, RabbitMQ, Redis, Triton, Orthanc): a killed
worker, a restarted broker, an unavailable PACS or Triton, a flushed Redis and an interrupted upload
lose no job and produce no second result."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.internal_identity import bearer_header
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.triton import LocalTriton
from glioscope_common.dev.testing import fresh_postgres_database, require_service
from glioscope_common.volume import Volume

from .conftest import MODEL_REPOSITORY, E2ECase, Platform, start_platform, upload, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def faults(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, LocalTriton]]:
    tmp = tmp_path_factory.mktemp("faults")
    # Its own database: the flow tests upload the same study to the session's database.
    with (
        fresh_postgres_database("glioscope_faults") as database_url,
        LocalOrthanc(tmp / "orthanc", stable_age=2) as orthanc,
        LocalTriton(MODEL_REPOSITORY) as triton,
    ):
        env = {
            "GLIOSCOPE_DATABASE_URL": database_url,
            "GLIOSCOPE_BROKER_URL": request.getfixturevalue("rabbitmq_url"),
            "GLIOSCOPE_REDIS_URL": request.getfixturevalue("redis_url"),
            "GLIOSCOPE_INFERENCE_URL": triton.grpc_url,
            "GLIOSCOPE_MAX_UPSTREAM_RETRIES": "2",
            "GLIOSCOPE_RETRY_BACKOFF_S": "1",
            "GLIOSCOPE_RETRY_BACKOFF_MAX_S": "2",
        }
        for platform in start_platform(tmp, env, orthanc):
            yield platform, triton


def small_study(folder: Path, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    images = {role: Volume(rng.uniform(0, 800, (40, 36, 14)).astype(np.float32), affine) for role in ("T1", "T1c", "T2", "FLAIR")}
    write_study(images, folder, patient_id=f"FAULT{seed}", patient_name="Fault^Case", study_description="faults", seed=seed)
    return sorted(folder.rglob("*.dcm"))


def seg_instances(platform: Platform, study_uid: str) -> int:
    client = httpx.Client(base_url=platform.orthanc.dicomweb_url, timeout=30, auth=platform.orthanc.auth)
    series = client.get(f"/studies/{study_uid}/series", params={"Modality": "SEG"})
    if series.status_code == 204 or not series.content:
        return 0
    total = 0
    for item in series.json():
        series_uid = item["0020000E"]["Value"][0]
        total += len(client.get(f"/studies/{study_uid}/series/{series_uid}/instances").json())
    return total


def reports_for(platform: Platform, study_uid: str) -> list[dict]:
    response = httpx.get(
        f"http://127.0.0.1:{platform.stack.ports['reporting']}/api/reports",
        params={"study_instance_uid": study_uid},
        headers=bearer_header(platform.env["GLIOSCOPE_SERVICE_TOKEN"], audience="reporting", subject="e2e-test",
                              role="service", issuer="worker"),
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["reports"]


def wait_for_stage(client: httpx.Client, job_id: str, stages: set[str], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["stage"] in stages or job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {stages}")


def assert_exactly_one_result(platform: Platform, study_uid: str, job: dict) -> None:
    assert seg_instances(platform, study_uid) == 1
    reports = reports_for(platform, study_uid)
    assert [r["job_id"] for r in reports] == [job["id"]]


def test_worker_killed_mid_inference_completes_exactly_once(faults: tuple[Platform, LocalTriton], e2e_case: E2ECase) -> None:
    platform, _ = faults
    response = upload(platform.client, e2e_case.files)
    assert response.status_code == 201, response.text
    job_id = response.json()["job"]["id"]
    job = wait_for_stage(platform.client, job_id, {"inference"})
    assert job["state"] == "running" and job["stage"] == "inference", job
    platform.stack.processes["worker"].kill()  # SIGKILL to the whole worker process group
    platform.stack.restart_worker()
    job = wait_for_job(platform.client, job_id)
    assert job["state"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    assert_exactly_one_result(platform, e2e_case.study_instance_uid, job)


def test_a_job_run_again_overwrites_its_results(faults: tuple[Platform, LocalTriton], tmp_path: Path) -> None:
    """Redelivery after success (e.g. an ack lost with the broker): the same SEG, NIfTI and report."""
    platform, _ = faults
    body = upload(platform.client, small_study(tmp_path, seed=41)).json()
    study_uid, job_id = body["study"]["study_instance_uid"], body["job"]["id"]
    first = wait_for_job(platform.client, job_id)
    assert first["state"] == "succeeded", first["error"]
    import sqlalchemy as sa

    engine = sa.create_engine(platform.env["GLIOSCOPE_DATABASE_URL"])
    with engine.begin() as connection:  # as if the worker had died right before marking it done
        connection.execute(sa.text("update jobs set state = 'running' where id = :id"), {"id": job_id})
    engine.dispose()
    from celery import Celery

    Celery(broker=platform.env["GLIOSCOPE_BROKER_URL"]).send_task(
        "inference.segmentation.run", args=[job_id], queue=platform.stack.worker_queue
    )
    second = wait_for_job(platform.client, job_id)
    assert second["state"] == "succeeded"
    assert second["attempts"] == 2
    assert second["seg_sop_instance_uid"] == first["seg_sop_instance_uid"]
    assert second["report_id"] == first["report_id"]
    assert_exactly_one_result(platform, study_uid, second)


def queued_messages(queue: str) -> int:
    """Messages RabbitMQ holds in `queue` (ready + unacknowledged), from rabbitmqctl."""
    listed = subprocess.run(["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "messages"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    counts = dict(line.split() for line in listed.splitlines() if len(line.split()) == 2)
    return int(counts.get(queue, 0))


def test_rabbitmq_restarted_mid_run(faults: tuple[Platform, LocalTriton], tmp_path: Path) -> None:
    """The broker restarts while a job's message is in it: the job is in flight (queued in RabbitMQ, not
    done) when the broker stops, its message survives the restart, and it then runs exactly once. Catches a
    non-durable queue or transient message (the message is gone after start_app) and a test that restarts
    the broker after the job has already finished."""
    platform, _ = faults
    if subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode != 0:
        require_service("rabbitmqctl", "RabbitMQ's control tool is needed to restart the broker")
    queue = platform.stack.worker_queue
    platform.stack.processes["worker"].stop()  # the job waits in the broker
    try:
        body = upload(platform.client, small_study(tmp_path, seed=42)).json()
        job_id = body["job"]["id"]
        waiting = queued_messages(queue)
        job = platform.client.get(f"/api/jobs/{job_id}").json()
        assert job["state"] == "queued" and waiting >= 1, (job, waiting)
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        try:
            assert platform.client.get(f"/api/jobs/{job_id}").json()["state"] == "queued"  # in flight at the stop
            time.sleep(2)
        finally:
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        assert queued_messages(queue) >= waiting, "the job's message did not survive the broker restart"
    finally:
        platform.stack.restart_worker()
    job = wait_for_job(platform.client, job_id, timeout_s=400)
    assert job["state"] == "succeeded", job["error"]
    assert job["attempts"] == 1, job  # run once, from the message that survived
    assert_exactly_one_result(platform, body["study"]["study_instance_uid"], job)
    # The gateway publishes again once the broker is back.
    again = upload(platform.client, small_study(tmp_path / "after", seed=43)).json()
    assert wait_for_job(platform.client, again["job"]["id"])["state"] == "succeeded"


def test_orthanc_unavailable_fails_clearly_then_retries(faults: tuple[Platform, LocalTriton], tmp_path: Path) -> None:
    platform, _ = faults
    platform.stack.processes["worker"].stop()
    body = upload(platform.client, small_study(tmp_path, seed=44)).json()
    study_uid = body["study"]["study_instance_uid"]
    platform.orthanc.stop()
    try:
        platform.stack.restart_worker()
        job = wait_for_job(platform.client, body["job"]["id"], timeout_s=120)
    finally:
        platform.orthanc.start()
    assert job["state"] == "failed"
    assert "unavailable" in job["error"].lower() or "unreachable" in job["error"].lower(), job["error"]
    assert "retries" in job["error"]
    retried = platform.client.post(f"/api/studies/{study_uid}/jobs")
    assert retried.status_code == 201, retried.text
    assert wait_for_job(platform.client, retried.json()["id"])["state"] == "succeeded"


def test_triton_unavailable_fails_clearly_then_retries(faults: tuple[Platform, LocalTriton], tmp_path: Path) -> None:
    platform, triton = faults
    triton.stop()
    try:
        body = upload(platform.client, small_study(tmp_path, seed=45)).json()
        job = wait_for_job(platform.client, body["job"]["id"], timeout_s=120)
    finally:
        triton.start()
    assert job["state"] == "failed"
    assert "triton" in job["error"].lower(), job["error"]
    retried = platform.client.post(f"/api/studies/{body['study']['study_instance_uid']}/jobs")
    assert wait_for_job(platform.client, retried.json()["id"])["state"] == "succeeded"


def test_redis_flushed_loses_nothing(faults: tuple[Platform, LocalTriton], tmp_path: Path) -> None:
    platform, _ = faults
    body = upload(platform.client, small_study(tmp_path, seed=46)).json()
    redis.Redis.from_url(platform.env["GLIOSCOPE_REDIS_URL"]).flushdb()
    job = wait_for_job(platform.client, body["job"]["id"])
    assert job["state"] == "succeeded"
    redis.Redis.from_url(platform.env["GLIOSCOPE_REDIS_URL"]).flushdb()
    uid = body["study"]["study_instance_uid"]
    assert platform.client.get(f"/api/studies/{uid}/measurements").status_code == 200
    assert platform.client.get(f"/api/studies/{uid}/report.pdf").status_code == 200
    assert platform.client.get(f"/api/jobs/{job['id']}").json()["state"] == "succeeded"


def test_interrupted_upload_registers_nothing(faults: tuple[Platform, LocalTriton], tmp_path: Path) -> None:
    platform, _ = faults
    before = len(platform.client.get("/api/studies").json())
    files = small_study(tmp_path, seed=47)
    boundary = "glioscopeboundary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{p.name}"\r\n'
        f"Content-Type: application/dicom\r\n\r\n".encode() + p.read_bytes() + b"\r\n"
        for p in files
    )
    body = parts + f"--{boundary}--\r\n".encode()
    port = platform.stack.ports["gateway"]
    headers = (
        f"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in platform.client.headers.items() if k.lower().startswith(("authorization", "x-api-key")))
        + "\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(headers + body[: len(body) // 2])  # the client goes away half-way
    time.sleep(2)
    assert len(platform.client.get("/api/studies").json()) == before
    assert platform.client.get("/healthz").status_code == 200
