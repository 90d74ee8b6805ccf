#!/usr/bin/env python3
"""The gateway's cost per read request (loopback only, bounded in time), nothing else running.

Starts the production configuration as bench_load.py does (Postgres, RabbitMQ, Redis, Orthanc), stops
the worker, uploads 2 of bench_load's studies, then: 300 sequential requests per route (the worklist,
a study, a job), printing the gateway's CPU milliseconds per request (all its processes' user + system
time), the whole machine's, and the latency; then 20 users looping over the three routes for 8 s
(as bench_load's browsers, without uploads), printing requests/s, CPU and p50/p95, and how many
Postgres connections were opened meanwhile.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_load  # noqa: E402
from glioscope_common.dev.orthanc import LocalOrthanc  # noqa: E402
from glioscope_common.dev.stack import LocalStack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            fields = open(f"/proc/{pid}/task/{task}/stat").read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def backends_opened(database: str) -> int:
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        row = conn.execute("select sessions from pg_stat_database where datname = %s", (database,)).fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-load")
    args = parser.parse_args()
    work: Path = args.work.resolve()
    studies = bench_load.make_studies(work / "studies", 2, (192, 192, 64))
    database = f"glioscope_cost_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    orthanc = LocalOrthanc(work / f"orthanc-{database}", stable_age=60).start()
    api_key = "bench-api-key-" + secrets.token_hex(8)
    env = bench_load.production_env(database, orthanc, work, api_key)
    stack = LocalStack(env=env, log_dir=work / "logs-cost", worker_queue=f"cost-{secrets.token_hex(3)}",
                       gateway_workers=args.gateway_workers)
    try:
        stack.start()
        stack.processes["worker"].stop()  # the gateway's own cost only
        gateway = stack.processes["gateway"].process
        assert gateway is not None
        group = subprocess.run(["pgrep", "-g", str(os.getpgid(gateway.pid))], capture_output=True, text=True)
        pids = [int(p) for p in group.stdout.split()]
        headers = {"x-api-key": api_key}
        with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=600) as client:
            for files in studies:
                payload = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
                assert client.post("/api/studies", files=payload).status_code == 201
            study = client.get("/api/studies", params={"limit": 50}).json()[0]
            routes = {"worklist": ("/api/studies", {"limit": 50}),
                      "study": (f"/api/studies/{study['study_instance_uid']}", None),
                      "job": (f"/api/jobs/{study['latest_job']['id']}", None)}
            for _ in range(20):  # warm up
                for path, params in routes.values():
                    client.get(path, params=params)
            for name, (path, params) in routes.items():
                n = 300
                gateway_0, machine_0, started = cpu_seconds(pids), machine_cpu_seconds(), time.perf_counter()
                latencies = []
                for _ in range(n):
                    t = time.perf_counter()
                    assert client.get(path, params=params).status_code == 200
                    latencies.append(time.perf_counter() - t)
                elapsed = time.perf_counter() - started
                print(f"{name:8s} sequential: gateway CPU {1000 * (cpu_seconds(pids) - gateway_0) / n:.2f} ms/request, "
                      f"machine CPU {1000 * (machine_cpu_seconds() - machine_0) / n:.2f} ms/request, "
                      f"p50 {1000 * statistics.median(latencies):.1f} ms, {n / elapsed:.0f} requests/s", flush=True)

        stop = threading.Event()
        latencies: list[float] = []
        lock = threading.Lock()

        def browse() -> None:
            with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as client:
                while not stop.is_set():
                    for path, params in routes.values():
                        t = time.perf_counter()
                        client.get(path, params=params)
                        with lock:
                            latencies.append(time.perf_counter() - t)
                    time.sleep(0.05)

        opened_0 = backends_opened(database)
        threads = [threading.Thread(target=browse) for _ in range(20)]
        gateway_0, machine_0, started = cpu_seconds(pids), machine_cpu_seconds(), time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(8)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        latencies.sort()
        print(f"20 users: {len(latencies) / elapsed:.0f} requests/s, gateway CPU {100 * (cpu_seconds(pids) - gateway_0) / elapsed:.0f} %, "
              f"machine CPU {100 * (machine_cpu_seconds() - machine_0) / elapsed:.0f} %, "
              f"p50 {1000 * bench_load.percentile(latencies, 0.5):.0f} ms, p95 {1000 * bench_load.percentile(latencies, 0.95):.0f} ms, "
              f"Postgres connections opened {backends_opened(database) - opened_0}")
        return 0
    finally:
        stack.stop()
        orthanc.stop()
        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
