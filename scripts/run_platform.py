#!/usr/bin/env python3
"""Start Glioscope on this machine with the embedded defaults and segment a demo study.

SQLite, a broker that needs no server (kombu's SQLAlchemy transport), onnxruntime in the worker and a
local Orthanc with DICOMweb. The demo study is made by the project's own synthetic generator; with
--real-brats the public BraTS case in ../shared/data/real is loaded too (when that folder exists).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_BRATS = ROOT.parent / "shared" / "data" / "real" / "brats-gli-00001-000"


def embedded_env(var: Path) -> dict[str, str]:
    return {
        "GLIOSCOPE_ENVIRONMENT": "development",
        "GLIOSCOPE_DATA_DIR": str(var),
        "GLIOSCOPE_DATABASE_URL": f"sqlite:///{var}/glioscope.db",
        "GLIOSCOPE_BROKER_URL": f"sqla+sqlite:///{var}/broker.db",
        "GLIOSCOPE_INFERENCE_URL": "onnxruntime",
        "GLIOSCOPE_NIFTI_ROOT": str(var / "nifti"),
        "GLIOSCOPE_MODEL_REPOSITORY": str(ROOT / "model_repository"),
        "GLIOSCOPE_BOOTSTRAP_API_KEY": demo_api_key(var),
        # The first admin, for signing in to the viewer (created only while no user exists).
        "GLIOSCOPE_BOOTSTRAP_ADMIN_USERNAME": DEMO_ADMIN,
        "GLIOSCOPE_BOOTSTRAP_ADMIN_PASSWORD": demo_secret(var, "demo-admin-password", "pw_"),
        # No service accepts a published default: this machine's own keys, made once, kept in var/ (mode 600).
        "GLIOSCOPE_JWT_SECRET": demo_secret(var, "jwt-secret", "jwt_", 48),
        "GLIOSCOPE_SERVICE_TOKEN": demo_secret(var, "service-token", "svc_", 48),
    } | ({"GLIOSCOPE_FRONTEND_DIST": str(ROOT / "frontend" / "dist")}  # the viewer at /
         if (ROOT / "frontend" / "dist" / "index.html").is_file() else {})


DEMO_ADMIN = "demo-admin"


def demo_secret(var: Path, name: str, prefix: str, nbytes: int = 24) -> str:
    """A random secret made once and kept in var/<name> (mode 600)."""
    path = var / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(prefix + secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def demo_api_key(var: Path) -> str:
    """The demo's service API key (X-API-Key), kept in var/demo-api-key."""
    return demo_secret(var, "demo-api-key", "gsk_")


def synthetic_study(out_dir: Path, seed: int) -> Path:
    """The demo study as DICOM files, made once by the synthetic generator and cached."""
    marker = out_dir / "study.json"
    if marker.exists():
        return out_dir
    from glioscope_common.dev.synthetic_study import write_study
    from glioscope_common.volume import Volume
    from glioscope_training.synth import generate_case

    case = generate_case(seed)
    images = {name: Volume(np.asarray(data), case.affine) for name, data in case.images.items()}
    study_uid, _ = write_study(images, out_dir, patient_id=f"DEMO{seed:04d}", patient_name="Demo^Synthetic",
                               study_description="MR BRAIN TUMOUR (synthetic demo)", seed=seed)
    marker.write_text(json.dumps({"study_instance_uid": study_uid, "seed": seed}))
    return out_dir


def real_brats_study(out_dir: Path) -> Path:
    marker = out_dir / "study.json"
    if marker.exists():
        return out_dir
    from glioscope_common.dev.synthetic_study import write_study
    from glioscope_common.dicom.nifti import volume_from_nifti

    names = {"T1": "t1n", "T1c": "t1c", "T2": "t2w", "FLAIR": "t2f"}
    images = {role: volume_from_nifti(REAL_BRATS / f"BraTS-GLI-00001-000-{suffix}.nii.gz") for role, suffix in names.items()}
    study_uid, _ = write_study(images, out_dir, patient_id="BRATS00001", patient_name="BraTS^GLI^00001",
                               study_description="MR BRAIN (BraTS-GLI-00001-000, public)", seed=1)
    marker.write_text(json.dumps({"study_instance_uid": study_uid}))
    return out_dir


def upload_folder(client: httpx.Client, folder: Path) -> dict:
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in sorted(folder.rglob("*.dcm"))]
    response = client.post("/api/studies", files=files, timeout=600)
    if response.status_code >= 400:
        raise SystemExit(f"upload refused ({response.status_code}): {response.text}")
    return response.json()


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 900) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        snapshot = (job["state"], job["stage"])
        if snapshot != last:
            print(f"  job {job_id[:8]}: {job['state']:9s} {job['stage']:12s} {job['progress']*100:5.1f} %", flush=True)
            last = snapshot
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.5)
    raise SystemExit("the demo job did not finish in time")


def fetch_results(client: httpx.Client, study_uid: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, route in (("segmentation.dcm", "segmentation"), ("mask.nii.gz", "mask.nii.gz"), ("report.pdf", "report.pdf"),
                        ("measurements.json", "measurements")):
        response = client.get(f"/api/studies/{study_uid}/{route}", timeout=120)
        response.raise_for_status()
        (out_dir / name).write_bytes(response.content)
        written.append(out_dir / name)
    return written


def demo(client: httpx.Client, label: str, folder: Path, results: Path) -> None:
    print(f"Uploading the {label} study ({sum(1 for _ in folder.rglob('*.dcm'))} DICOM files) …", flush=True)
    started = time.perf_counter()
    upload = upload_folder(client, folder)
    study_uid = upload["study"]["study_instance_uid"]
    job = upload["job"]
    if not upload["created"] and job and job["state"] == "succeeded":
        print("  (already segmented)")
    else:
        job = wait_for_job(client, job["id"])
    if job["state"] != "succeeded":
        raise SystemExit(f"the demo job failed: {job['error']}")
    print(f"  done in {time.perf_counter() - started:.1f} s (upload to result)")
    files = fetch_results(client, study_uid, results)
    volumes = job["measurements"]["region_volumes_ml"]
    print(f"  whole tumour {volumes['WT']:.1f} mL, tumour core {volumes['TC']:.1f} mL, enhancing {volumes['ET']:.1f} mL")
    for path in files:
        print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="where data, logs and results go")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic demo case")
    parser.add_argument("--real-brats", action="store_true", help="also load ../shared/data/real's BraTS case")
    parser.add_argument("--exit", action="store_true", help="stop the platform once the demo is segmented")
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--worker-metrics-port", type=int, default=9100, help="the worker's /metrics (0: none)")
    args = parser.parse_args()

    from glioscope_common.dev.orthanc import LocalOrthanc
    from glioscope_common.dev.stack import LocalStack

    var: Path = args.var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    os.environ.update(embedded_env(var))
    print("Preparing the demo study (synthetic generator, cached after the first run) …", flush=True)
    demo_folder = synthetic_study(var / "demo" / f"synthetic-{args.seed}", args.seed)

    # Orthanc: its HTTP password made once (var/orthanc-password, user `glioscope`); C-STORE only from the
    # modalities in GLIOSCOPE_ORTHANC_MODALITIES, JSON {"NAME": {"AET": …, "Host": <IP address>, "Port": …}}
    # (default: calling AET GLIOSCOPE-SCU from 127.0.0.1; docs/security.md, "Orthanc").
    modalities = os.environ.get("GLIOSCOPE_ORTHANC_MODALITIES", "").strip()
    orthanc = LocalOrthanc(work_dir=var / "orthanc", http_port=8042, dicom_port=4242, stable_age=5,
                           password=demo_secret(var, "orthanc-password", ""),
                           modalities=json.loads(modalities) if modalities else None)
    orthanc.start()
    env = embedded_env(var) | orthanc.settings_env
    stack = LocalStack(env=env, log_dir=var / "logs", ports={"gateway": args.gateway_port, "reporting": 8002, "nifti": 8003},
                       worker_metrics_port=args.worker_metrics_port)
    try:
        stack.start()
        senders = ", ".join(f"{m['AET']}@{m['Host']}" for m in orthanc.modalities.values())
        print(f"Glioscope is up: API {stack.gateway_url}/docs · Orthanc {orthanc.url} (user {orthanc.username}, "
              f"password in {var / 'orthanc-password'}; DICOM port {orthanc.dicom_port}, AET {orthanc.aet}, "
              f"C-STORE from {senders}) · logs in {var / 'logs'}", flush=True)
        if args.worker_metrics_port:
            print(f"Metrics: {stack.gateway_url}/metrics, http://127.0.0.1:8002/metrics, http://127.0.0.1:8003/metrics, "
                  f"worker http://127.0.0.1:{args.worker_metrics_port}/metrics", flush=True)
        print(f"Viewer: {stack.gateway_url}/ · sign in as {DEMO_ADMIN} with the password in "
              f"{var / 'demo-admin-password'} · API key (X-API-Key) in {var / 'demo-api-key'}", flush=True)
        with httpx.Client(base_url=stack.gateway_url, timeout=60, headers={"x-api-key": env["GLIOSCOPE_BOOTSTRAP_API_KEY"]}) as client:
            demo(client, "synthetic demo", demo_folder, var / "demo" / "results-synthetic")
            if args.real_brats:
                if REAL_BRATS.is_dir():
                    demo(client, "real BraTS", real_brats_study(var / "demo" / "brats-gli-00001-000"), var / "demo" / "results-brats")
                else:
                    print(f"--real-brats: {REAL_BRATS} is not here; skipped")
        if args.exit:
            return 0
        print("Running. Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except Exception:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.stop()
        orthanc.stop()


if __name__ == "__main__":
    sys.exit(main())
