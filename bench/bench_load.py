#!/usr/bin/env python3
"""Load benchmark (loopback only, bounded in time): clinicians browsing while studies are uploaded.

N users loop over the worklist, a study and a job (GET) while M uploaders post studies; afterwards
every uploaded study's job must succeed. Prints p50/p95/max latency per route, the error rate and
the number of lost jobs. Target on a 2-core machine: 0 errors, 0 lost jobs, worklist p95 <= 300 ms
with 20 users during 2 concurrent uploads. Production configuration: Postgres, RabbitMQ, Redis,
Orthanc; inference in the worker with onnxruntime (Triton adds nothing to what is measured here).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from glioscope_common.dev.synthetic_study import write_study  # noqa: E402
from glioscope_common.dev.orthanc import LocalOrthanc  # noqa: E402
from glioscope_common.dev.stack import LocalStack  # noqa: E402
from glioscope_common.volume import Volume  # noqa: E402

API_KEY = "bench-api-key-" + secrets.token_hex(8)


def make_studies(folder: Path, count: int, shape: tuple[int, int, int]) -> list[list[Path]]:
    studies = []
    for n in range(count):
        target = folder / f"study-{n}"
        if not target.exists():
            rng = np.random.default_rng(n)
            affine = np.diag([1.0, 1.0, 1.0, 1.0])
            images = {r: Volume(rng.uniform(0, 900, shape).astype(np.float32), affine) for r in ("T1", "T1c", "T2", "FLAIR")}
            write_study(images, target, patient_id=f"LOAD{n:03d}", patient_name="Load^Test", study_description="load", seed=1000 + n)
        studies.append(sorted(target.rglob("*.dcm")))
    return studies


def production_env(database: str, orthanc: LocalOrthanc, work: Path, api_key: str) -> dict[str, str]:
    """The services' environment: Postgres `database`, RabbitMQ, Redis, `orthanc`, onnxruntime."""
    return {
        "GLIOSCOPE_ENVIRONMENT": "test",
        "GLIOSCOPE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        "GLIOSCOPE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "GLIOSCOPE_REDIS_URL": "redis://127.0.0.1:6379/13",
        "GLIOSCOPE_INFERENCE_URL": "onnxruntime",
        **orthanc.settings_env,  # URLs and credentials
        "GLIOSCOPE_NIFTI_ROOT": str(work / "nifti"),
        "GLIOSCOPE_MODEL_REPOSITORY": os.environ.get("GLIOSCOPE_MODEL_REPOSITORY", str(ROOT / "model_repository")),
        "GLIOSCOPE_BOOTSTRAP_API_KEY": api_key,
        "GLIOSCOPE_JWT_SECRET": "bench-jwt-secret-" + secrets.token_hex(16),
        "GLIOSCOPE_SERVICE_TOKEN": "bench-service-token-" + secrets.token_hex(8),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--uploaders", type=int, default=2)
    parser.add_argument("--studies", type=int, default=4, help="studies uploaded in all")
    parser.add_argument("--shape", type=int, nargs=3, default=[192, 192, 64])
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-load")
    parser.add_argument("--gateway-workers", type=int, default=2,
                        help="gateway API processes (the chart runs at least 2 replicas, and a watcher)")
    parser.add_argument("--worker-nice", type=int, default=LocalStack.worker_nice,
                        help="niceness of the inference worker (LocalStack's default)")
    args = parser.parse_args()
    work: Path = args.work.resolve()
    studies = make_studies(work / "studies", args.studies, tuple(args.shape))

    import psycopg

    database = f"glioscope_load_{secrets.token_hex(4)}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    orthanc = LocalOrthanc(work / f"orthanc-{database}", stable_age=60).start()
    env = production_env(database, orthanc, work, API_KEY) | {
        # The load is the point here: lift the per-caller upload rate limit.
        "GLIOSCOPE_UPLOAD_RATE_PER_MIN": "1000",
        "GLIOSCOPE_UPLOAD_BURST": "100",
    }
    stack = LocalStack(env=env, log_dir=work / "logs", worker_queue=f"load-{secrets.token_hex(3)}",
                       gateway_workers=args.gateway_workers, worker_nice=args.worker_nice)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    requests: dict[str, int] = defaultdict(int)
    uploaded: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()
    headers = {"x-api-key": API_KEY}
    try:
        stack.start()
        base = stack.gateway_url

        def record(route: str, started: float, ok: bool) -> None:
            with lock:
                requests[route] += 1
                latencies[route].append(time.perf_counter() - started)
                if not ok:
                    errors[route] += 1

        def browse() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    response = client.get("/api/studies", params={"limit": 50})
                    record("GET /api/studies", started, response.status_code == 200)
                    items = response.json() if response.status_code == 200 else []
                    if items:
                        study = items[0]
                        started = time.perf_counter()
                        ok = client.get(f"/api/studies/{study['study_instance_uid']}").status_code == 200
                        record("GET /api/studies/{uid}", started, ok)
                        if study.get("latest_job"):
                            started = time.perf_counter()
                            ok = client.get(f"/api/jobs/{study['latest_job']['id']}").status_code == 200
                            record("GET /api/jobs/{id}", started, ok)
                    time.sleep(0.05)

        queue = list(studies)

        def upload() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        files = queue.pop()
                    payload = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
                    started = time.perf_counter()
                    response = client.post("/api/studies", files=payload)
                    record("POST /api/studies", started, response.status_code == 201)
                    if response.status_code == 201:
                        with lock:
                            uploaded.append(response.json())

        browsers = [threading.Thread(target=browse, daemon=True) for _ in range(args.users)]
        uploaders = [threading.Thread(target=upload) for _ in range(args.uploaders)]
        started = time.perf_counter()
        for thread in browsers + uploaders:
            thread.start()
        for thread in uploaders:
            thread.join()
        stop.set()
        for thread in browsers:
            thread.join()
        load_s = time.perf_counter() - started

        lost = 0
        lost_detail: list[dict] = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for item in uploaded:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    job = client.get(f"/api/jobs/{item['job']['id']}").json()
                    if job["state"] in ("succeeded", "failed"):
                        break
                    time.sleep(0.5)
                if job["state"] != "succeeded":
                    lost += 1
                    lost_detail.append({"job": job["id"], "state": job["state"], "stage": job["stage"], "error": job["error"]})
        lost += args.studies - len(uploaded)

        total = sum(requests.values())
        summary = {
            "users": args.users, "uploaders": args.uploaders, "studies": args.studies,
            "gateway_workers": args.gateway_workers, "worker_nice": args.worker_nice,
            "instances_per_study": len(studies[0]), "load_seconds": round(load_s, 1),
            "requests": total, "errors": sum(errors.values()),
            "error_rate": round(sum(errors.values()) / max(total, 1), 4), "lost_jobs": lost, "lost_detail": lost_detail,
            "routes": {
                route: {"n": len(v), "p50_ms": round(statistics.median(v) * 1000, 1),
                        "p95_ms": round(percentile(v, 0.95) * 1000, 1), "max_ms": round(max(v) * 1000, 1)}
                for route, v in latencies.items()
            },
        }
        print(json.dumps(summary, indent=2))
        (work / "load.json").write_text(json.dumps(summary, indent=2))
        return 0
    finally:
        stop.set()
        stack.stop()
        orthanc.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
