"""The embedded worker (`make run`: LocalStack with an SQLite broker) serves its /metrics on
GLIOSCOPE_METRICS_PORT from the main process, aggregating its prefork children (PROMETHEUS_MULTIPROC_DIR):
the job counters are there at 0 before the first job."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from glioscope_common.dev.processes import free_port
from glioscope_common.dev.stack import LocalStack


def test_the_embedded_worker_serves_its_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "GLIOSCOPE_ENVIRONMENT": "development",
        "GLIOSCOPE_DATABASE_URL": f"sqlite:///{tmp_path}/glioscope.db",
        "GLIOSCOPE_BROKER_URL": f"sqla+sqlite:///{tmp_path}/broker.db",
        "GLIOSCOPE_INFERENCE_URL": "onnxruntime",
        "GLIOSCOPE_SERVICE_TOKEN": "svc_worker-metrics-test-0123456789abcdefghijklmnop",
    }
    stack = LocalStack(env=env, log_dir=tmp_path / "logs", worker_metrics_port=port, worker_nice=0,
                       ports={"nifti": 1, "reporting": 2})
    worker = stack.worker_process()
    assert worker.env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "worker-metrics")
    worker.start()
    try:
        worker.wait_healthy(timeout_s=120)
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline:  # the pool child writes its zeros when it starts
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                text = ""
            if 'glioscope_jobs_total{state="failed"}' in text:
                break
            time.sleep(0.2)
        for state in ("succeeded", "failed", "retried", "skipped"):
            assert f'glioscope_jobs_total{{state="{state}"}} 0.0' in text, worker.log_tail()
    finally:
        worker.stop()
