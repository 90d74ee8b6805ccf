#!/usr/bin/env python3
"""Per-case accuracy of the shipped model through the platform's inference path on real cases.

- ../shared/data/brats18-labelled: 10 BraTS 2018 cases with expert labels (skull-stripped, 1 mm):
  Dice and HD95 for WT / TC / ET (BraTS label 4 = enhancing is our 3). None of them was used for
  training (the model is trained on synthetic cases only), so no cross-validation is involved.
- ../shared/data/real/tcga-fg-6692-raw: a raw hospital study without expert tumour labels: labelled
  voxels, the share inside the case's brain mask (dilated one voxel), the brain mask's Dice.

Usage: python bench/eval_real_cases.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BRATS18 = SHARED / "brats18-labelled"
RAW = SHARED / "real" / "tcga-fg-6692-raw"
BRATS18_FILES = {"T1": "t1", "T1c": "t1ce", "T2": "t2", "FLAIR": "flair"}
RAW_FILES = {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}


def load(path: Path):  # type: ignore[no-untyped-def]
    import nibabel as nib

    from glioscope_common.volume import Volume

    image = nib.load(str(path))
    return Volume(np.asanyarray(image.dataobj, dtype=np.float32), image.affine)


def quality_ranking(rows: list[dict]) -> dict[str, float | None]:
    """Spearman's rho between the quality estimate and the Dice per region (no training involved: the
    estimate has no fitted parameter, so no cross-validation is needed to rank)."""
    from scipy.stats import spearmanr

    out: dict[str, float | None] = {}
    for region in ("WT", "TC", "ET"):
        pairs = [(r[f"quality_{region}"], r[f"{region}_dice"]) for r in rows if r[f"quality_{region}"] is not None]
        out[region] = round(float(spearmanr(*zip(*pairs)).statistic), 3) if len(pairs) >= 3 else None
    pairs = [(r["quality"], np.mean([r["WT_dice"], r["TC_dice"], r["ET_dice"]])) for r in rows if r["quality"] is not None]
    out["case (lowest region) vs mean Dice"] = round(float(spearmanr(*zip(*pairs)).statistic), 3) if len(pairs) >= 3 else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not BRATS18.exists() or not RAW.exists():
        print(f"skipped: {SHARED} is not on this machine")
        return 0
    from glioscope_common.inference_backend import OnnxRuntimeBackend
    from glioscope_common.model_metadata import ModelMetadata
    from glioscope_inference.brain_extraction import BRAIN_MODEL, load_brain_extractor
    from glioscope_inference.pipeline import segment_study
    from glioscope_training.metrics import dice, region_scores

    model_dir = ROOT / "model_repository" / "glioscope_unet"
    metadata = ModelMetadata.load(model_dir)
    backend = OnnxRuntimeBackend(model_dir / metadata.onnx_file, threads=args.threads)
    extractor = load_brain_extractor(ROOT / "model_repository" / BRAIN_MODEL, args.threads)
    print(f"model {metadata.name} {metadata.version}; brain extraction {'on' if extractor else 'missing'}")
    rows = []
    print(f"{'case':24s} {'WT':>6s} {'TC':>6s} {'ET':>6s} {'HD95 WT':>8s} {'q':>6s} {'s':>6s}")
    for case in sorted(p for p in BRATS18.iterdir() if p.is_dir()):
        volumes = {role: load(case / f"{case.name}_{suffix}.nii.gz") for role, suffix in BRATS18_FILES.items()}
        truth = np.asarray(load(case / f"{case.name}_seg.nii.gz").data).astype(np.uint8)
        truth[truth == 4] = 3
        started = time.perf_counter()
        result = segment_study(volumes, metadata, backend, brain_extractor=extractor)
        seconds = time.perf_counter() - started
        spacing = tuple(float(s) for s in np.sqrt((volumes["T1c"].affine[:3, :3] ** 2).sum(axis=0)))
        scores = region_scores(result.label_map, truth, spacing)
        quality = result.measurements.quality
        rows.append({"case": case.name, "seconds": round(seconds, 1),
                     **{f"{r}_{m}": round(v[m], 4) for r, v in scores.items() for m in ("dice", "hd95")},
                     **{f"quality_{r}": getattr(quality, r.lower()) if quality else None for r in ("WT", "TC", "ET")},
                     "quality": quality.overall if quality else None, "review": quality.review if quality else None})
        print(f"{case.name:24s} {scores['WT']['dice']:6.3f} {scores['TC']['dice']:6.3f} {scores['ET']['dice']:6.3f} "
              f"{scores['WT']['hd95']:8.1f} {rows[-1]['quality'] or float('nan'):6.3f} {seconds:6.1f}"
              + ("  flagged for review" if rows[-1]["review"] else ""), flush=True)
    means = {k: round(float(np.mean([r[k] for r in rows if r[k] is not None])), 4) for k in rows[0] if k not in ("case", "review")}
    print(f"{'mean':24s} {means['WT_dice']:6.3f} {means['TC_dice']:6.3f} {means['ET_dice']:6.3f} {means['WT_hd95']:8.1f}")
    ranking = quality_ranking(rows)
    print("quality estimate vs Dice, Spearman rho per region: "
          + ", ".join(f"{r} {v:+.2f}" if v is not None else f"{r} n/a" for r, v in ranking.items()))

    volumes = {role: load(RAW / f"{name}.nii.gz") for role, name in RAW_FILES.items()}
    started = time.perf_counter()
    result = segment_study(volumes, metadata, backend, brain_extractor=extractor)
    seconds = time.perf_counter() - started
    reference_brain = np.asarray(load(RAW / "t1c_brainmask.nii.gz").data) > 0
    labelled = result.label_map > 0
    inside = float((labelled & ndimage.binary_dilation(reference_brain)).sum()) / max(1, int(labelled.sum()))
    raw = {"labelled_voxels": int(labelled.sum()), "inside_brain": round(inside, 4),
           "brain_mask_dice": round(dice(result.brain_mask, reference_brain), 4) if result.brain_mask is not None else None,
           "WT_ml": result.measurements.region_volumes_ml.get("WT"), "hemisphere": result.measurements.hemisphere,
           "lobes": [lobe.name for lobe in result.measurements.location.lobes] if result.measurements.location else None,
           "quality": result.measurements.quality.model_dump() if result.measurements.quality else None,
           "warnings": result.measurements.input_warnings, "seconds": round(seconds, 1)}
    print(f"raw tcga-fg-6692: {json.dumps(raw)}")
    if args.json:
        args.json.write_text(json.dumps({"brats18": rows, "mean": means, "quality_spearman": ranking, "raw": raw}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
