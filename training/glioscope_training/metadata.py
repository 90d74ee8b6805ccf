"""Write model_repository/<name>/<n>/metadata.json (the model contract of version folder <n>).

    python -m glioscope_training.metadata --model model_repository/glioscope_unet --folder 3 \
        --version 0.5.0 --eval training/runs/eval.json

A new model version goes in a new folder beside the others (docs/model-versions.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PATCH = 160
OVERLAP = 0.25

CATEGORY = {"value": "49755003", "scheme_designator": "SCT", "meaning": "Morphologically Altered Structure"}
LABELS = [
    {"value": 1, "name": "Necrotic / non-enhancing tumour core", "category": CATEGORY,
     "type": {"value": "6574001", "scheme_designator": "SCT", "meaning": "Necrosis"},
     "color_rgb": [255, 60, 60]},
    {"value": 2, "name": "Peritumoural oedema", "category": CATEGORY,
     "type": {"value": "79654002", "scheme_designator": "SCT", "meaning": "Edema"},
     "color_rgb": [60, 220, 60]},
    {"value": 3, "name": "Enhancing tumour", "category": CATEGORY,
     "type": {"value": "108369006", "scheme_designator": "SCT", "meaning": "Neoplasm"},
     "color_rgb": [255, 230, 40]},
]

TRAINING_DATA = (
    "Synthetic only: BraTS-like cases generated from the MNI152 2009 template shipped with nilearn "
    "(T1 + grey/white matter maps) with random affine/elastic deformation, noisy nested tumours "
    "(labels 1/2/3, mass effect, ~30% non-enhancing cores, necrosis FLAIR-dark to FLAIR-bright), "
    "background distractors (ventricles, "
    "periventricular caps, choroid plexus, vessels, small white-matter hyperintensities) and "
    "randomised T1/T1c/T2/FLAIR contrasts, bias field, blur, thick slices and noise "
    "(glioscope_training.synth, seeds < 100000). No patient data was used for training."
)


def build(version: str, accuracy: dict, flip_axes: list[int] | None = None, folder: str = "1") -> dict:
    return {
        "name": "glioscope_unet",
        "version": version,
        "onnx_file": f"{folder}/model.onnx",  # relative to the model folder
        "input_name": "image",
        "output_name": "logits",
        "channels": ["T1", "T1c", "T2", "FLAIR"],
        "spacing_mm": [1.0, 1.0, 1.0],
        "orientation": "RAS",
        "normalisation": {"method": "zscore", "mask": "nonzero", "clip": 5.0},
        "patch_size": [PATCH, PATCH, PATCH],
        "overlap": OVERLAP,
        "output_type": "softmax",
        "flip_axes": list(flip_axes or []),
        "labels": LABELS,
        "intended_use": "research use only, not for clinical decisions",
        "training_data": TRAINING_DATA,
        "accuracy": accuracy,
        "algorithm_name": "Glioscope U-Net",
        "algorithm_version": version,
    }


def accuracy_from_eval(report: dict) -> dict:
    acc: dict = {"evaluation": "python -m glioscope_training.evaluate (held-out synthetic seeds 100000+)"}
    if "synthetic_summary" in report:
        acc["synthetic_heldout_n"] = len(report["synthetic"])
        for k, v in report["synthetic_summary"].items():
            acc[f"synthetic_{k}_mean"] = v["mean"]
            acc[f"synthetic_{k}_median"] = v["median"]
    if "real" in report:
        acc["real_brats_gli_00001_000_predicted_volumes_ml"] = report["real"]["volumes_ml"]
        acc["real_note"] = "no reference label available for the real case; volumes and overlays only"
    return acc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="model_repository/glioscope_unet")
    ap.add_argument("--folder", required=True, help="the version folder (Triton's version number), e.g. 3")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--eval", default=None, help="JSON written by glioscope_training.evaluate --json")
    ap.add_argument("--extra", default=None, help="JSON object merged into accuracy")
    ap.add_argument("--flip-axes", default="", help="test-time flips the service runs, e.g. 0 (left-right)")
    args = ap.parse_args(argv)
    acc = accuracy_from_eval(json.loads(Path(args.eval).read_text())) if args.eval else {}
    if args.extra:
        acc.update(json.loads(args.extra))
    if not args.folder.isdigit():
        raise SystemExit(f"--folder is a Triton version number (1, 2, ...), got {args.folder!r}")
    path = Path(args.model) / args.folder / "metadata.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    flip_axes = sorted({int(a) for a in args.flip_axes.split(",") if a.strip()})
    if not set(flip_axes) <= {0, 1, 2}:
        raise SystemExit(f"--flip-axes takes axes 0, 1, 2 of the model grid, got {flip_axes}")
    path.write_text(json.dumps(build(args.version, acc, flip_axes, args.folder), indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
