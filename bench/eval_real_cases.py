#!/usr/bin/env python3
"""Per-case accuracy through the platform's inference path (`segment_study`, onnxruntime) on real cases.

- ../shared/data/brats18-labelled: 10 BraTS 2018 cases with expert labels (skull-stripped, 1 mm): Dice and
  HD95 for WT / TC / ET (BraTS label 4 = enhancing is our 3). From v0.4.0 on the shipped model is trained on
  these cases too, so its own figures on them say nothing about new patients: `--cv DIR` scores each case
  with the fold model that did not see it (DIR/folds.json names each fold model's held-out cases; made by
  `glioscope_training.train_real` and exported like the shipped model). That is the figure to publish.
- `--sequences FLAIR,T1c`: only those sequences reach the pipeline (a protocol without the others).
- `--synthetic 100000:100012`: held-out synthetic cases (never trained on) with `--model`.
- ../shared/data/real/tcga-fg-6692-raw: a raw hospital study without expert tumour labels: labelled voxels,
  the share inside the case's brain mask (dilated one voxel), the brain mask's Dice (`--no-raw` skips it).

Usage: python bench/eval_real_cases.py [--model DIR] [--cv DIR] [--sequences ...] [--synthetic a:b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BRATS18 = SHARED / "brats18-labelled"
RAW = SHARED / "real" / "tcga-fg-6692-raw"
BRATS18_FILES = {"T1": "t1", "T1c": "t1ce", "T2": "t2", "FLAIR": "flair"}
RAW_FILES = {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}
REGIONS = ("WT", "TC", "ET")


def load(path: Path):  # type: ignore[no-untyped-def]
    import nibabel as nib

    from glioscope_common.volume import Volume

    image = nib.load(str(path))
    return Volume(np.asanyarray(image.dataobj, dtype=np.float32), image.affine)


class Models:
    """onnxruntime backends by model folder, loaded once."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._loaded: dict[Path, tuple[Any, Any]] = {}

    def get(self, folder: Path) -> tuple[Any, Any]:
        from glioscope_common.inference_backend import OnnxRuntimeBackend
        from glioscope_common.model_metadata import ModelMetadata

        if folder not in self._loaded:
            metadata = ModelMetadata.load(folder)
            self._loaded[folder] = (metadata, OnnxRuntimeBackend(folder / metadata.onnx_file, threads=self.threads))
        return self._loaded[folder]


def fold_models(cv: Path) -> dict[str, Path]:
    """case -> the fold model folder that held it out."""
    folds = json.loads((cv / "folds.json").read_text())["folds"]
    return {case: cv / fold for fold, cases in folds.items() for case in cases}


def spearman(pairs: list[tuple[float, float]]) -> float | None:
    from scipy.stats import spearmanr

    return round(float(spearmanr(*zip(*pairs)).statistic), 3) if len(pairs) >= 3 else None


def quality_ranking(rows: list[dict]) -> dict[str, float | None]:
    """Spearman's rho between the quality estimate and the Dice (the estimate has no fitted parameter; in
    `--cv` mode every prediction comes from a model that did not see the case)."""
    out: dict[str, float | None] = {}
    for region in REGIONS:
        out[region] = spearman([(r[f"quality_{region}"], r[f"{region}_dice"]) for r in rows
                                if r[f"quality_{region}"] is not None and r[f"{region}_dice"] is not None])
    pairs = [(r["quality"], float(np.mean([r[f"{g}_dice"] for g in REGIONS if r[f"{g}_dice"] is not None])))
             for r in rows if r["quality"] is not None]
    out["case (lowest region) vs mean Dice"] = spearman(pairs)
    return out


def score_row(name: str, result: Any, truth: np.ndarray, spacing: tuple[float, ...], seconds: float) -> dict:
    from glioscope_training.metrics import region_scores

    scores = region_scores(result.label_map, truth, spacing)
    reported = getattr(result.measurements, "regions_reported", None) or list(REGIONS)
    quality = result.measurements.quality
    row: dict[str, Any] = {"case": name, "seconds": round(seconds, 1)}
    for region in REGIONS:
        for metric in ("dice", "hd95"):
            row[f"{region}_{metric}"] = round(scores[region][metric], 4) if region in reported else None
        row[f"quality_{region}"] = getattr(quality, region.lower()) if quality else None
    row["quality"] = quality.overall if quality else None
    row["review"] = quality.review if quality else None
    return row


def print_table(title: str, rows: list[dict]) -> dict[str, float | None]:
    def cell(v: float | None, width: int, digits: int) -> str:
        return f"{v:{width}.{digits}f}" if v is not None and np.isfinite(v) else f"{'-':>{width}s}"

    print(f"\n{title}\n{'case':24s} {'WT':>6s} {'TC':>6s} {'ET':>6s} {'HD95 WT':>8s} {'q':>6s} {'s':>6s}")
    for r in rows:
        print(f"{r['case']:24s} {cell(r['WT_dice'], 6, 3)} {cell(r['TC_dice'], 6, 3)} {cell(r['ET_dice'], 6, 3)} "
              f"{cell(r['WT_hd95'], 8, 1)} {cell(r['quality'], 6, 3)} {r['seconds']:6.1f}"
              + ("  flagged for review" if r["review"] else "") + (f"  ({r['model']})" if r.get("model") else ""))
    means: dict[str, float | None] = {}
    for key in ("WT_dice", "TC_dice", "ET_dice", "WT_hd95", "TC_hd95", "ET_hd95"):
        values = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key])]
        means[key] = round(float(np.mean(values)), 4) if values else None
    print(f"{'mean':24s} {cell(means['WT_dice'], 6, 3)} {cell(means['TC_dice'], 6, 3)} {cell(means['ET_dice'], 6, 3)} "
          f"{cell(means['WT_hd95'], 8, 1)}")
    return means


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model_repository" / "glioscope_unet")
    parser.add_argument("--cv", type=Path, help="fold model folders + folds.json: each case scored by the model that did not see it")
    parser.add_argument("--sequences", default="T1,T1c,T2,FLAIR", help="the sequences the pipeline gets")
    parser.add_argument("--synthetic", default="", help="start:stop of held-out synthetic seeds (100000+)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw hospital study")
    parser.add_argument("--no-brats", action="store_true", help="skip the BraTS 2018 cases")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not BRATS18.exists() or not RAW.exists():
        print(f"skipped: {SHARED} is not on this machine")
        return 0
    from glioscope_inference.brain_extraction import BRAIN_MODEL, load_brain_extractor
    from glioscope_inference.pipeline import segment_study

    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()]
    models = Models(args.threads)
    metadata, _ = models.get(args.model)
    by_case = fold_models(args.cv) if args.cv else {}
    extractor = load_brain_extractor(ROOT / "model_repository" / BRAIN_MODEL, args.threads)
    print(f"model {metadata.name} {metadata.version}" + (f"; cross-validated with {args.cv}" if args.cv else "")
          + f"; sequences {', '.join(sequences)}; brain extraction {'on' if extractor else 'missing'}")
    report: dict[str, Any] = {"model": metadata.version, "cv": str(args.cv) if args.cv else None, "sequences": sequences}

    rows = []
    for case in [] if args.no_brats else sorted(p for p in BRATS18.iterdir() if p.is_dir()):
        folder = by_case.get(case.name, args.model)
        if args.cv and case.name not in by_case:
            raise SystemExit(f"{case.name} is in no fold of {args.cv}/folds.json")
        volumes = {role: load(case / f"{case.name}_{BRATS18_FILES[role]}.nii.gz") for role in sequences}
        truth = np.asarray(load(case / f"{case.name}_seg.nii.gz").data).astype(np.uint8)
        truth[truth == 4] = 3
        started = time.perf_counter()
        result = segment_study(volumes, *models.get(folder), brain_extractor=extractor)
        ref = next(iter(volumes.values()))
        spacing = tuple(float(s) for s in np.sqrt((ref.affine[:3, :3] ** 2).sum(axis=0)))
        rows.append(score_row(case.name, result, truth, spacing, time.perf_counter() - started))
        if args.cv:
            rows[-1]["model"] = folder.name
    if rows:
        report["brats18"], report["mean"] = rows, print_table("BraTS 2018 expert-labelled cases", rows)
        report["quality_spearman"] = quality_ranking(rows)
        print("quality estimate vs Dice, Spearman rho: "
              + ", ".join(f"{r} {v:+.2f}" if v is not None else f"{r} n/a" for r, v in report["quality_spearman"].items()))

    if args.synthetic:
        from glioscope_common.volume import Volume
        from glioscope_training import synth

        start, stop = (int(v) for v in args.synthetic.split(":"))
        if start < 100_000:
            raise SystemExit("synthetic seeds under 100000 are training seeds")
        synthetic = []
        for seed in range(start, stop):
            case = synth.generate_case(seed)
            volumes = {role: Volume(case.images[role], case.affine) for role in sequences}
            started = time.perf_counter()
            result = segment_study(volumes, *models.get(args.model), brain_extractor=extractor)
            synthetic.append(score_row(f"synthetic {seed}", result, case.label, (1.0, 1.0, 1.0),
                                       time.perf_counter() - started))
            synthetic[-1]["tumour_ml"] = round(float((case.label > 0).sum()) / 1000, 1)
        report["synthetic"], report["synthetic_mean"] = synthetic, print_table("held-out synthetic cases", synthetic)

    if not args.no_raw:
        volumes = {role: load(RAW / f"{RAW_FILES[role]}.nii.gz") for role in sequences}
        started = time.perf_counter()
        result = segment_study(volumes, *models.get(args.model), brain_extractor=extractor)
        seconds = time.perf_counter() - started
        reference_brain = np.asarray(load(RAW / "t1c_brainmask.nii.gz").data) > 0
        labelled = result.label_map > 0
        inside = float((labelled & ndimage.binary_dilation(reference_brain)).sum()) / max(1, int(labelled.sum()))
        from glioscope_training.metrics import dice

        raw = {"labelled_voxels": int(labelled.sum()), "inside_brain": round(inside, 4),
               "brain_mask_dice": round(dice(result.brain_mask, reference_brain), 4) if result.brain_mask is not None else None,
               "WT_ml": result.measurements.region_volumes_ml.get("WT"), "hemisphere": result.measurements.hemisphere,
               "lobes": [lobe.name for lobe in result.measurements.location.lobes] if result.measurements.location else None,
               "quality": result.measurements.quality.model_dump() if result.measurements.quality else None,
               "warnings": result.measurements.input_warnings, "seconds": round(seconds, 1)}
        report["raw"] = raw
        print(f"\nraw tcga-fg-6692: {json.dumps(raw)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
