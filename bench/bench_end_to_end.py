#!/usr/bin/env python3
"""End-to-end benchmark on the BraTS-size demo study (issue: end to end on real parts).

Prints, for the embedded and the service configuration (`services`: Triton over gRPC, as on
Kubernetes; `services-shm`: the same with tensors through system shared memory, for a Triton on the
worker's host, GLIOSCOPE_TRITON_SHARED_MEMORY=system):
- upload-to-result seconds (POST /api/studies until the DICOM-SEG and the PDF can be downloaded),
- each stage's seconds (from the job row),
- the same model's pure in-process onnxruntime time (`segment_study` on the same volumes) and the
  ratio of the two,
- the worker's peak RSS (VmHWM of the worker's processes),
- gateway ingest rate (instances/s, upload incl. validation + STOW) against a direct STOW-RS to
  Orthanc of the same files, and their ratio.
Targets on a 2-core machine: upload to result <= 60 s, ratio <= 1.5, peak RSS <= 3 GiB, ingest
ratio >= 0.8. `--repeat N` (default 3) runs N interleaved rounds and reports medians (the ratio is
median upload-to-result over median pure time; the worker's RSS is the largest seen). Results are
also written to var/bench/end_to_end.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from run_platform import synthetic_study  # noqa: E402

from glioscope_common.dev.orthanc import LocalOrthanc  # noqa: E402
from glioscope_common.dev.triton import LocalTriton  # noqa: E402
from glioscope_common.dev.stack import LocalStack  # noqa: E402


def peak_rss_bytes(pgid: int) -> int:
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ProcessLookupError):
            continue
    return peak


def direct_stow_rate(files: list[Path], work: Path) -> float:
    raw = [p.read_bytes() for p in files]
    shutil.rmtree(work / "orthanc-direct", ignore_errors=True)  # an empty PACS every round
    with LocalOrthanc(work / "orthanc-direct") as orthanc:
        client = orthanc.dicomweb()
        started = time.perf_counter()
        client.store_instances(raw)
        return len(raw) / (time.perf_counter() - started)


def pure_onnxruntime_seconds(files: list[Path]) -> tuple[float, dict[str, float]]:
    from glioscope_common.dicom.read import read_series
    from glioscope_common.inference_backend import OnnxRuntimeBackend
    from glioscope_common.model_metadata import ModelMetadata
    from glioscope_common.sequences import SeriesInfo, identify_sequences
    from glioscope_inference.pipeline import segment_study

    groups: dict[str, list[pydicom.Dataset]] = {}
    for path in files:
        ds = pydicom.dcmread(path)
        groups.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    infos = [SeriesInfo.from_dataset(g[0], number_of_instances=len(g)) for g in groups.values()]
    roles = identify_sequences(infos)
    volumes = {role: read_series(groups[uid]) for role, uid in roles.items()}
    model_dir = ROOT / "model_repository" / "glioscope_unet"
    metadata = ModelMetadata.load(model_dir)
    backend = OnnxRuntimeBackend(model_dir / metadata.onnx_file)
    started = time.perf_counter()
    result = segment_study(volumes, metadata, backend, batch_size=backend.preferred_batch_size)
    return time.perf_counter() - started, result.timings_s


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@contextmanager
def configured_platform(name: str, work: Path, stable_age: int = 60) -> Iterator[tuple[LocalStack, LocalOrthanc, dict[str, str]]]:
    """A fresh platform in `work` (Orthanc, and Triton and a new Postgres database for the service
    configurations), started; yields (stack, orthanc, env) and stops everything afterwards."""
    shutil.rmtree(work, ignore_errors=True)  # a fresh platform: nothing known from an earlier run
    work.mkdir(parents=True)
    orthanc = LocalOrthanc(work / "orthanc", stable_age=stable_age).start()
    triton = None
    database = None
    env = {
        "GLIOSCOPE_ENVIRONMENT": "test",
        **orthanc.settings_env,  # URLs and credentials
        "GLIOSCOPE_NIFTI_ROOT": str(work / "nifti"),
        "GLIOSCOPE_MODEL_REPOSITORY": str(ROOT / "model_repository"),
        "GLIOSCOPE_JWT_SECRET": secrets.token_urlsafe(32),
        "GLIOSCOPE_SERVICE_TOKEN": secrets.token_urlsafe(32),  # no service accepts a missing or published key
        "GLIOSCOPE_BOOTSTRAP_API_KEY": "gsk_" + secrets.token_urlsafe(32),
    }
    if name == "embedded":
        env |= {
            "GLIOSCOPE_DATABASE_URL": f"sqlite:///{work}/glioscope.db",
            "GLIOSCOPE_BROKER_URL": f"sqla+sqlite:///{work}/broker.db",
            "GLIOSCOPE_INFERENCE_URL": "onnxruntime",
        }
    else:
        import psycopg

        database = f"glioscope_bench_{secrets.token_hex(4)}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        # Triton is batch work like the worker that feeds it: the same niceness on one machine.
        triton = LocalTriton(ROOT / "model_repository", threads=2, nice=LocalStack.worker_nice).start()
        env |= {
            "GLIOSCOPE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
            "GLIOSCOPE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            "GLIOSCOPE_REDIS_URL": "redis://127.0.0.1:6379/14",
            "GLIOSCOPE_INFERENCE_URL": triton.grpc_url,
            "GLIOSCOPE_TRITON_SHARED_MEMORY": "system" if name == "services-shm" else "none",
        }
    stack = LocalStack(env=env, log_dir=work / "logs", worker_queue=f"bench-{secrets.token_hex(3)}")
    try:
        stack.start()
        yield stack, orthanc, env
    finally:
        stack.stop()
        orthanc.stop()
        if triton:
            triton.stop()
        if database:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def wait_for_job(client: httpx.Client, job_id: str, stack: LocalStack) -> dict:
    """Poll the job every 0.2 s until it has finished; a failed job raises with the services' logs."""
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    if job["state"] != "succeeded":
        raise RuntimeError(f"job failed: {job['error']}\n{stack.logs()}")
    return job


def job_figures(job: dict, stack: LocalStack) -> dict:
    """The job's stages, queue wait and run time, and the worker's peak RSS (VmHWM of its processes)."""
    worker = stack.processes["worker"].process
    rss = peak_rss_bytes(os.getpgid(worker.pid)) if worker else 0
    return {
        "stages_s": {k: round(v, 2) for k, v in job["timings_s"].items()},
        # where the rest goes: the job waiting for the worker, the worker's run (stages plus bookkeeping)
        "job_queue_wait_s": round(_seconds(job["created_at"], job["started_at"]), 2),
        "job_run_s": round(_seconds(job["started_at"], job["finished_at"]), 2),
        "worker_peak_rss_gib": round(rss / 1024**3, 2),
    }


def run_configuration(name: str, files: list[Path], work: Path) -> dict:
    with configured_platform(name, work) as (stack, _orthanc, env):
        payload = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
        with httpx.Client(base_url=stack.gateway_url, timeout=600, headers={"x-api-key": env["GLIOSCOPE_BOOTSTRAP_API_KEY"]}) as client:
            started = time.perf_counter()
            response = client.post("/api/studies", files=payload)
            ingest_s = time.perf_counter() - started
            response.raise_for_status()
            body = response.json()
            job = wait_for_job(client, body["job"]["id"], stack)
            job_done_s = time.perf_counter() - started
            fetch_results(client, body["study"]["study_instance_uid"])
            upload_to_result_s = time.perf_counter() - started
        figures = job_figures(job, stack)
        return {
            "configuration": name,
            "upload_to_result_s": round(upload_to_result_s, 2),
            "ingest_s": round(ingest_s, 2),
            "ingest_instances_per_s": round(len(files) / ingest_s, 1),
            "stages_s": figures.pop("stages_s"),
            **figures,
            # the client noticing (it polls every 0.2 s) and downloading SEG and PDF
            "results_download_s": round(upload_to_result_s - job_done_s, 2),
        }


def fetch_results(client: httpx.Client, study_uid: str) -> None:
    """Download the DICOM-SEG and the report PDF (raises when either is missing)."""
    client.get(f"/api/studies/{study_uid}/segmentation").raise_for_status()
    client.get(f"/api/studies/{study_uid}/report.pdf").raise_for_status()


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["upload_to_result_s"])
    return ordered[len(ordered) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configurations", nargs="+", default=["embedded", "services", "services-shm"],
                        choices=["embedded", "services", "services-shm"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of (pure run, direct STOW, each configuration); medians are reported")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    work: Path = args.work.resolve()
    study = synthetic_study(work / f"study-{args.seed}", args.seed)
    files = sorted(study.rglob("*.dcm"))
    print(f"study: {len(files)} instances, {sum(p.stat().st_size for p in files) / 1e6:.0f} MB", flush=True)

    # Rounds interleave the pure run and the platform runs, so that a machine that gets faster or
    # slower over the minutes affects both sides of the ratio alike.
    pure_runs: list[tuple[float, dict[str, float]]] = []
    direct_rates: list[float] = []
    runs: dict[str, list[dict]] = {name: [] for name in args.configurations}
    for round_ in range(1, max(1, args.repeat) + 1):
        pure_s, pure_stages = pure_onnxruntime_seconds(files)
        pure_runs.append((pure_s, pure_stages))
        print(f"[{round_}] pure onnxruntime segment_study, one process: {pure_s:.1f} s {pure_stages}", flush=True)
        direct_rates.append(direct_stow_rate(files, work))
        print(f"[{round_}] direct STOW-RS to Orthanc: {direct_rates[-1]:.0f} instances/s", flush=True)
        for name in args.configurations:
            result = run_configuration(name, files, work / name)
            runs[name].append(result)
            print(f"[{round_}] {name}: {result['upload_to_result_s']:.1f} s upload to result, stages {result['stages_s']}",
                  flush=True)

    # the middle run (the upper one of an even number), on both sides of the ratio alike
    pure_s, pure_stages = sorted(pure_runs, key=lambda p: p[0])[len(pure_runs) // 2]
    direct_rate = float(np.median(direct_rates))
    results = {"instances": len(files), "rounds": len(pure_runs), "pure_onnxruntime_s": round(pure_s, 2),
               "pure_onnxruntime_runs_s": [round(p, 2) for p, _ in pure_runs],
               "pure_stages_s": {k: round(v, 2) for k, v in pure_stages.items()},
               "direct_stow_instances_per_s": round(direct_rate, 1), "configurations": []}
    for name, configuration_runs in runs.items():
        result = dict(_median_run(configuration_runs))
        result["upload_to_result_runs_s"] = [r["upload_to_result_s"] for r in configuration_runs]
        result["ratio_to_pure"] = round(result["upload_to_result_s"] / pure_s, 2)
        result["ingest_instances_per_s"] = round(float(np.median([r["ingest_instances_per_s"] for r in configuration_runs])), 1)
        result["ingest_ratio"] = round(result["ingest_instances_per_s"] / direct_rate, 2)
        result["worker_peak_rss_gib"] = max(r["worker_peak_rss_gib"] for r in configuration_runs)
        results["configurations"].append(result)
        print(json.dumps(result, indent=2), flush=True)

    print(f"\nmedians of {len(pure_runs)} rounds; pure onnxruntime {pure_s:.1f} s (runs {results['pure_onnxruntime_runs_s']})")
    print("configuration  upload→result  ratio  peak RSS  ingest/s  ingest ratio  runs")
    for r in results["configurations"]:
        print(f"{r['configuration']:13s}  {r['upload_to_result_s']:10.1f} s  {r['ratio_to_pure']:5.2f}  "
              f"{r['worker_peak_rss_gib']:5.2f} GiB  {r['ingest_instances_per_s']:8.0f}  {r['ingest_ratio']:6.2f}  "
              f"{r['upload_to_result_runs_s']}")
    (work / "end_to_end.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
