"""Evaluate the exported model: held-out synthetic cases (Dice, HD95) and the real BraTS case.

    python -m glioscope_training.evaluate --model model_repository/glioscope_unet \
        --n-synthetic 5 --real /work/shared/data/real/brats-gli-00001-000 --images docs/images

Synthetic seeds start at 100000; training uses seeds below 100000 only. The real case has no
label: its predicted volumes are reported and overlay PNGs are written for a visual check.
`--checkpoint` evaluates a PyTorch checkpoint instead (exported to a temporary ONNX file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .cache import StaleCase, read_case
from .infer import ort_predictor, segment
from .metrics import region_scores
from .synth import SEQUENCES, generate_case

HELDOUT_SEED0 = 100000
REAL_SUFFIX = {"T1": "t1n", "T1c": "t1c", "T2": "t2w", "FLAIR": "t2f"}
COLORS = {1: (255, 60, 60), 2: (60, 220, 60), 3: (255, 230, 40)}


def load_real(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Four BraTS sequences as a [4, X, Y, Z] RAS array and its affine."""
    import nibabel as nib

    chans, affine = [], None
    for seq in SEQUENCES:
        path = next(folder.glob(f"*-{REAL_SUFFIX[seq]}.nii*"))
        img = nib.as_closest_canonical(nib.load(str(path)))
        chans.append(np.asarray(img.get_fdata(), np.float32))
        affine = img.affine
    return np.stack(chans), affine


def volumes_ml(seg: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    vox_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    return {
        "necrotic_core_1": float((seg == 1).sum() * vox_ml),
        "oedema_2": float((seg == 2).sum() * vox_ml),
        "enhancing_3": float((seg == 3).sum() * vox_ml),
        "WT": float((seg > 0).sum() * vox_ml),
        "TC": float(np.isin(seg, (1, 3)).sum() * vox_ml),
        "ET": float((seg == 3).sum() * vox_ml),
    }


def overlay_png(background: np.ndarray, seg: np.ndarray, path: Path, title_centre=None) -> None:
    """Axial, coronal and sagittal slices through the lesion centre (RAS array), FLAIR + labels."""
    from PIL import Image

    if title_centre is None:
        pts = np.argwhere(seg > 0)
        c = pts.mean(0).astype(int) if len(pts) else np.array(seg.shape) // 2
    else:
        c = np.asarray(title_centre, int)
    bg = background / max(np.percentile(background[background > 0], 99.5), 1e-6) if background.any() else background
    bg = np.clip(bg, 0, 1)
    views = [
        (bg[:, :, c[2]], seg[:, :, c[2]]),  # axial (i right, j anterior)
        (bg[:, c[1], :], seg[:, c[1], :]),  # coronal
        (bg[c[0], :, :], seg[c[0], :, :]),  # sagittal
    ]
    tiles = []
    for v, (b, s) in enumerate(views):
        # display: superior/anterior up, patient right on the left (radiological) for axial/coronal
        b, s = np.rot90(b), np.rot90(s)
        if v < 2:
            b, s = b[:, ::-1], s[:, ::-1]
        gray = (np.stack([b] * 3, -1) * 255).astype(np.float32)
        both = np.concatenate([gray, gray.copy()], axis=1)
        for lab, col in COLORS.items():
            m = s == lab
            right = both[:, b.shape[1]:]
            right[m] = 0.45 * right[m] + 0.55 * np.array(col, np.float32)
        tiles.append(both.astype(np.uint8))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0))) for t in tiles]
    img = np.concatenate(tiles, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(path)


def heldout_case(seed: int, folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw [4, X, Y, Z] image (T1, T1c, T2, FLAIR) and label of a held-out case: from `folder`
    (`cache --heldout` writes the same `generate_case` output there) or generated now."""
    path = folder / f"case_{seed}.npz" if folder else None
    if path is not None and path.exists():
        try:
            image, label = read_case(path)
            return image.astype(np.float32), label
        except StaleCase as exc:  # the same seed makes another case now
            print(f"{exc}: generating it again", file=sys.stderr)
    case = generate_case(seed)
    return np.stack([case.images[s] for s in SEQUENCES]), case.label


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="model_repository/glioscope_unet")
    ap.add_argument("--checkpoint", default=None, help="evaluate a PyTorch checkpoint instead")
    ap.add_argument("--n-synthetic", type=int, default=5)
    ap.add_argument("--real", default="/work/shared/data/real/brats-gli-00001-000")
    ap.add_argument("--images", default=None, help="folder for overlay PNGs (e.g. docs/images)")
    ap.add_argument("--prefix", default="model")
    ap.add_argument("--json", default=None)
    ap.add_argument("--flip-tta", action="store_true")
    ap.add_argument("--no-postprocess", action="store_true")
    ap.add_argument("--cases", default=None,
                    help="folder of held-out cases written by `cache --heldout` (generated here when absent)")
    args = ap.parse_args(argv)

    meta = json.loads((Path(args.model) / "metadata.json").read_text())
    patch, overlap = tuple(meta["patch_size"]), float(meta["overlap"])
    onnx_path = Path(args.model) / meta.get("onnx_file", "1/model.onnx")
    if args.checkpoint:
        from .export import export, load_weights

        model, _ = load_weights(args.checkpoint)
        onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
        export(model, onnx_path, patch[0])
    predict = ort_predictor(onnx_path)
    # test-time flip as the service runs it (metadata flip_axes), or forced with --flip-tta; a graph
    # that mirrors inside (graph_flip_axes, glioscope_training.mirror_graph) outputs probabilities
    if set(meta.get("flip_axes", [])) - {0}:
        raise SystemExit("evaluation mirrors along axis 0 (left-right) only; the metadata asks for more")
    in_graph = not args.checkpoint and meta.get("output_type") == "probabilities"
    flip = args.flip_tta or 0 in meta.get("flip_axes", [])
    seg_kw = {"flip_tta": flip, "postprocess": not args.no_postprocess, "probabilities": in_graph}
    report: dict = {"model": str(onnx_path), "patch_size": patch, "overlap": overlap, "flip_tta": flip,
                    "graph_flip_axes": meta.get("graph_flip_axes", []) if in_graph else [], "synthetic": []}

    for n in range(args.n_synthetic):
        seed = HELDOUT_SEED0 + n
        image, label = heldout_case(seed, Path(args.cases) if args.cases else None)
        t = time.time()
        seg, _ = segment(predict, image, patch, overlap, **seg_kw)
        sec = time.time() - t
        scores = region_scores(seg, label)
        row = {"seed": seed, "seconds": round(sec, 1)}
        for r, v in scores.items():
            row[f"dice_{r}"] = round(v["dice"], 4)
            row[f"hd95_{r}"] = _finite(round(v["hd95"], 2))
        report["synthetic"].append(row)
        print(json.dumps(row), flush=True)
        if args.images and n == 0:
            overlay_png(image[3], seg, Path(args.images) / f"{args.prefix}-synthetic-pred.png")
            overlay_png(image[3], label, Path(args.images) / f"{args.prefix}-synthetic-truth.png")
    if report["synthetic"]:
        summ = {}
        for key in report["synthetic"][0]:
            if key.startswith(("dice_", "hd95_")):
                vals = [r[key] for r in report["synthetic"] if r[key] is not None]
                summ[key] = {"mean": round(float(np.mean(vals)), 4) if vals else None,
                             "median": round(float(np.median(vals)), 4) if vals else None,
                             "n_finite": len(vals)}
        report["synthetic_summary"] = summ
        print(json.dumps(summ), flush=True)

    if args.real and Path(args.real).exists():
        image, affine = load_real(Path(args.real))
        t = time.time()
        seg, _ = segment(predict, image, patch, overlap, **seg_kw)
        report["real"] = {"case": Path(args.real).name, "seconds": round(time.time() - t, 1),
                          "volumes_ml": {k: round(v, 2) for k, v in volumes_ml(seg, affine).items()}}
        print(json.dumps(report["real"]), flush=True)
        if args.images:
            overlay_png(image[3], seg, Path(args.images) / f"{args.prefix}-real-brats-00001.png")
            overlay_png(image[1], seg, Path(args.images) / f"{args.prefix}-real-brats-00001-t1c.png")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
