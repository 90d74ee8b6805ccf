#!/usr/bin/env python3
"""Benchmark brain extraction (deepbet's networks) on the real cases in ../shared/data (issue 15).

For each case and backend it prints the Dice of the brain mask against the reference, the seconds
of one brain extraction (image already in memory, model already loaded; best of --repeat) split
into the coarse pass, the fine pass and the rest, and the process's peak RSS. Each (case, backend)
runs in its own process so that the peak RSS is that case's.

References: the raw TCGA study's `t1c_brainmask.nii.gz` (its T1 is on the same grid, so the T1 mask
is compared with it too; target Dice >= 0.93); for skull-stripped BraTS images their own non-zero
voxels (the mask should cover the brain, Dice near 1), and where a BraTS 2018 label is there the
share of tumour voxels inside the mask.

Backends: `onnx` (onnxruntime: by default the worker's folder model_repository/glioscope_brainmask/,
or --model ROOT holding glioscope_brain_bbox/ and glioscope_brain_mask/ as written by
`python -m glioscope_training.brain_extraction_export --out ROOT`; without either the export is
made into a temporary folder when torch and deepbet are installed) and `torch` (deepbet's own
BrainExtraction, when torch and deepbet are installed). Target on this 2-core machine: <= 5 s.

    python bench/bench_brain_extraction.py [--model ROOT] [--threads 2] [--repeat 2] [--brats18 3]
        [--backend onnx --backend torch] [--json var/bench/brain_extraction.json]

`--pipeline` instead runs the raw study through the worker's pipeline (`glioscope segment`'s code path,
the shipped tumour model, onnxruntime) and prints the brain-extraction stage's time, the other
stages', the share of labelled voxels inside the case's brain mask (+1 voxel) and the brain mask's Dice.

Skips with a message (exit 0) when ../shared/data is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
DATA = ROOT.parent / "shared" / "data"
TARGET_DICE_RAW = 0.93
TARGET_SECONDS = 5.0


def cases(brats18: int) -> list[dict]:
    raw = DATA / "real" / "tcga-fg-6692-raw"
    gli = DATA / "real" / "brats-gli-00001-000"
    out = []
    for seq in ("t1c", "t1"):
        if (raw / f"{seq}.nii.gz").exists():
            out.append({"name": f"tcga-fg-6692-raw {seq}", "image": str(raw / f"{seq}.nii.gz"),
                        "reference": str(raw / "t1c_brainmask.nii.gz"), "kind": "mask"})
    for seq in ("t1c", "t1n"):
        f = gli / f"BraTS-GLI-00001-000-{seq}.nii.gz"
        if f.exists():
            out.append({"name": f"brats-gli-00001-000 {seq}", "image": str(f), "reference": "nonzero", "kind": "nonzero"})
    folders = sorted(p for p in (DATA / "brats18-labelled").glob("*") if p.is_dir())[:brats18]
    for folder in folders:
        t1ce = next(iter(folder.glob("*_t1ce.nii.gz")), None)
        seg = next(iter(folder.glob("*_seg.nii.gz")), None)
        if t1ce is not None:
            out.append({"name": f"{folder.name} t1ce", "image": str(t1ce), "reference": "nonzero", "kind": "nonzero",
                        "label": str(seg) if seg else None})
    return out


# ------------------------------------------------------------------------------------------- worker
def run_worker(backend: str, case: dict, model: str | None, threads: int, repeat: int, fine_size: int | None = None) -> dict:
    import nibabel as nib

    img = nib.load(case["image"])
    data = img.get_fdata(dtype=np.float32)
    data = data[..., 0] if data.ndim == 4 else data
    stages: dict[str, float] = {}
    t_load = time.perf_counter()
    if backend == "onnx":
        from glioscope_training.brain_extraction_export import extract_brain, ort_predictors

        if (Path(model) / "metadata.json").exists():  # the worker's single folder
            from glioscope_inference.brain_extraction import BrainExtractor

            extractor = BrainExtractor(model, threads)
            bbox, fine = extractor.predict_bbox, extractor.predict_mask
        else:
            extractor = None
            bbox, fine = ort_predictors(model, threads)

        def timed(name, fn):
            def predict(x):
                t = time.perf_counter()
                y = fn(x)
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
                return y
            return predict

        bbox, fine_pass = timed("coarse", bbox), timed("fine", fine)
        fine_shape = (fine_size,) * 3 if fine_size else tuple(int(v) for v in getattr(extractor, "fine_shape", (256,) * 3))

        def once() -> np.ndarray:
            return extract_brain(data, img.affine, bbox, fine_pass, fine_shape=fine_shape).mask
    else:
        import torch
        from deepbet import BrainExtraction

        torch.set_num_threads(threads)
        bet = BrainExtraction(no_gpu=True)
        in_memory = nib.Nifti1Image(data, img.affine, img.header)

        def once() -> np.ndarray:
            _, mask, _ = bet.run(in_memory)
            return np.asanyarray(mask.dataobj) > 0
    load_s = time.perf_counter() - t_load
    runs, per_run = [], []
    mask = None
    for _ in range(repeat):
        stages.clear()
        t = time.perf_counter()
        mask = once()
        runs.append(time.perf_counter() - t)
        per_run.append(dict(stages))
    assert mask is not None
    best = int(np.argmin(runs))
    if case["kind"] == "mask":
        ref = np.asanyarray(nib.load(case["reference"]).dataobj) > 0
    else:
        ref = data != 0
    inter = float((mask & ref).sum())
    result = {
        "case": case["name"], "backend": backend, "threads": threads, "fine_size": fine_size,
        "dice": 2 * inter / max(1.0, float(mask.sum() + ref.sum())),
        "reference_covered": inter / max(1.0, float(ref.sum())),
        "mask_inside_reference": inter / max(1.0, float(mask.sum())),
        "mask_ml": float(mask.sum()) * abs(float(np.linalg.det(img.affine[:3, :3]))) / 1000.0,
        "seconds": runs[best], "runs": runs, "load_seconds": load_s,
        "stages": per_run[best],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if case.get("label"):
        label = np.asanyarray(nib.load(case["label"]).dataobj) > 0
        result["tumour_inside_mask"] = float((label & mask).sum()) / max(1.0, float(label.sum()))
    return result


# ----------------------------------------------------------------------------------------- pipeline
def run_pipeline(threads: int) -> None:
    """The raw study through segment_study as `glioscope segment` runs it; the stages' seconds."""
    import nibabel as nib
    from glioscope_common.inference_backend import make_backend
    from glioscope_common.model_metadata import ModelMetadata
    from glioscope_inference.brain_extraction import BRAIN_MODEL, load_brain_extractor
    from glioscope_inference.cli import load_nifti
    from glioscope_inference.pipeline import segment_study
    from scipy import ndimage

    raw = DATA / "real" / "tcga-fg-6692-raw"
    if not raw.is_dir():
        print(f"skipped: {raw} not found")
        return
    model_dir = ROOT / "model_repository" / "glioscope_unet"
    metadata = ModelMetadata.load(model_dir)
    backend = make_backend("onnxruntime", model_dir, metadata, threads=threads)
    t = time.perf_counter()
    extractor = load_brain_extractor(ROOT / "model_repository" / BRAIN_MODEL, threads)
    load_s = time.perf_counter() - t
    volumes = {role: load_nifti(raw / f"{name}.nii.gz")
               for role, name in (("T1", "t1"), ("T1c", "t1c"), ("T2", "t2"), ("FLAIR", "flair"))}
    t = time.perf_counter()
    result = segment_study(volumes, metadata, backend, brain_extractor=extractor)  # co-registration decided as in the CLI
    total = time.perf_counter() - t
    reference = np.asanyarray(nib.load(str(raw / "t1c_brainmask.nii.gz")).dataobj) > 0
    slack = ndimage.binary_dilation(reference, structure=ndimage.generate_binary_structure(3, 3))
    labelled = int((result.label_map > 0).sum())
    inside = float((result.label_map[slack] > 0).sum()) / max(1, labelled)
    mask = result.brain_mask
    dice = float("nan")
    if mask is not None:
        dice = 2 * float((mask & reference).sum()) / float(mask.sum() + reference.sum())
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings_s.items())
    print(f"raw study through the pipeline ({threads} threads): brain extraction "
          f"{result.timings_s.get('brain_extraction', float('nan')):.2f} s (loading the two networks {load_s:.2f} s, "
          f"once per worker process); stages: {stages}; total {total:.1f} s; brain {result.brain_ml or 0:.0f} mL, "
          f"Dice {dice:.4f}; {labelled} labelled voxels, {inside:.1%} inside the case's brain mask (+1 voxel); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0:.0f} MiB")


# --------------------------------------------------------------------------------------------- main
def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def model_root(arg: str | None, tmp: Path) -> str | None:
    if arg:
        return arg
    default = ROOT / "model_repository" / "glioscope_brainmask"
    if (default / "metadata.json").exists():
        return str(default)
    if have("torch") and have("deepbet") and have("onnx"):
        print(f"exporting deepbet to ONNX in {tmp} (no --model given) ...", flush=True)
        subprocess.run([sys.executable, "-m", "glioscope_training.brain_extraction_export", "--out", str(tmp)],
                       check=True, cwd=ROOT / "training", stdout=subprocess.DEVNULL)
        return str(tmp)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="the worker's folder (glioscope_brainmask/), or a folder holding "
                                    "glioscope_brain_bbox/ and glioscope_brain_mask/")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--brats18", type=int, default=3, help="how many ../shared/data/brats18-labelled cases")
    ap.add_argument("--backend", action="append", choices=["onnx", "torch"])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--fine-shape", type=int, metavar="N",
                    help="onnx: the fine pass at N³ (a multiple of 32) instead of the model folder's setting")
    ap.add_argument("--pipeline", action="store_true", help="time the brain-extraction stage in the pipeline")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pipeline:
        run_pipeline(args.threads)
        return

    if args.worker:
        case = json.loads(args.worker)
        print(json.dumps(run_worker(case.pop("backend"), case, args.model, args.threads, args.repeat, args.fine_shape)))
        return

    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the real cases live in ../shared/data)")
        return
    all_cases = cases(args.brats18)
    if not all_cases:
        print(f"skipped: none of the expected cases under {DATA}")
        return
    backends = args.backend or ["onnx", "torch"]
    if "onnx" in backends and not have("onnxruntime"):
        print("onnx: skipped (onnxruntime is not installed)")
        backends.remove("onnx")
    if "torch" in backends and not (have("torch") and have("deepbet")):
        print("torch: skipped (torch and deepbet are not installed)")
        backends.remove("torch")
    results = []
    with tempfile.TemporaryDirectory(prefix="glioscope-bet-") as tmp:
        model = None
        if "onnx" in backends:
            model = model_root(args.model, Path(tmp))
            if model is None:
                print("onnx: skipped (no exported model folder; give --model or install torch, deepbet and onnx)")
                backends.remove("onnx")
            else:
                meta = Path(model) / "metadata.json"  # the worker's folder names its networks' files
                files = ([Path(model) / f for f in json.loads(meta.read_text())["files"].values()] if meta.exists()
                         else list(Path(model).rglob("*.onnx")))
                size = sum(f.stat().st_size for f in files)
                print(f"onnx model: {model} (two files, {size / 1e6:.1f} MB together)")
        print(f"{'case':<28} {'backend':<7} {'Dice':>7} {'ref in':>7} {'mask in':>7} {'mL':>6} "
              f"{'s':>6} {'coarse':>6} {'fine':>6} {'RSS MiB':>8} {'tumour in':>9}")
        for case in all_cases:
            for backend in backends:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(args.threads),
                       "--repeat", str(args.repeat), "--worker", json.dumps({**case, "backend": backend})]
                if model:
                    cmd += ["--model", model]
                if args.fine_shape:
                    cmd += ["--fine-shape", str(args.fine_shape)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT / "training", check=False)
                if proc.returncode != 0:
                    print(f"{case['name']:<28} {backend:<7} FAILED: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(r)
                st = r["stages"]
                tumour = f"{r['tumour_inside_mask']:.4f}" if "tumour_inside_mask" in r else "-"
                print(f"{r['case']:<28} {backend:<7} {r['dice']:7.4f} {r['reference_covered']:7.4f} "
                      f"{r['mask_inside_reference']:7.4f} {r['mask_ml']:6.0f} {r['seconds']:6.2f} "
                      f"{st.get('coarse', float('nan')):6.2f} {st.get('fine', float('nan')):6.2f} "
                      f"{r['peak_rss_mib']:8.0f} {tumour:>9}", flush=True)
    raw = [r for r in results if r["case"] == "tcga-fg-6692-raw t1c" and r["backend"] == "onnx"]
    if raw:
        r = raw[0]
        print(f"raw study T1c, onnxruntime: Dice {r['dice']:.4f} (target >= {TARGET_DICE_RAW}), "
              f"{r['seconds']:.2f} s (target <= {TARGET_SECONDS}), peak RSS {r['peak_rss_mib']:.0f} MiB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
