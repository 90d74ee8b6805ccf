"""Real expert-labelled cases (BraTS 2018 layout) for fine-tuning and cross-validation.

    python -m glioscope_training.real_cases pack --src ../shared/data/brats18-labelled --out runs/real18.npz.xz

`pack` stores each case cropped to its brain's bounding box, already z-scored the way inference does
(`infer.zscore`) and quantised to 63 levels over z in [-5, 5] (0 outside the brain: a step of 0.16
standard deviations, a rounding error of 0.05 SD, under the images' own noise and far under the
training's intensity jitter), LZMA-compressed, so that ten cases fit in about 22 MB and can travel to a
GPU machine (whose working-tree limit is 64 MiB). The packed file is training data: it must never be committed or copied into a model
folder (the images are not the project's to ship); `runs/` is ignored by git.

Folds are fixed by case name (`folds`) so that every cross-validated figure can be traced to the cases a
model did and did not see.
"""

from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import numpy as np

from .infer import zscore

BRATS18_SUFFIXES = ("t1", "t1ce", "t2", "flair")  # T1, T1c, T2, FLAIR: the model's channel order
Z_CLIP = 5.0
LEVELS = 63  # 1..63 inside the brain, 0 outside


def load_brats18(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw image [4, X, Y, Z] float32 (T1, T1c, T2, FLAIR) and label uint8 (BraTS 4 -> our 3)."""
    import nibabel as nib

    name = folder.name
    image = np.stack([np.asarray(nib.load(str(folder / f"{name}_{s}.nii.gz")).dataobj, np.float32)
                      for s in BRATS18_SUFFIXES])
    label = np.asarray(nib.load(str(folder / f"{name}_seg.nii.gz")).dataobj).astype(np.uint8)
    label[label == 4] = 3
    if set(np.unique(label)) - {0, 1, 2, 3}:
        raise ValueError(f"{name}: unexpected labels {sorted(set(np.unique(label)))}")
    return image, label


def quantise(z: np.ndarray, brain: np.ndarray) -> np.ndarray:
    q = np.rint((np.clip(z, -Z_CLIP, Z_CLIP) + Z_CLIP) / (2 * Z_CLIP) * (LEVELS - 1)) + 1
    return np.where(brain[None], q, 0).astype(np.uint8)


def dequantise(q: np.ndarray) -> np.ndarray:
    z = (q.astype(np.float32) - 1) / (LEVELS - 1) * (2 * Z_CLIP) - Z_CLIP
    return np.where(q > 0, z, 0).astype(np.float32)


def crop_box(brain: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(brain)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, brain.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def pack(src: Path, out: Path) -> list[str]:
    names = sorted(p.name for p in src.iterdir() if p.is_dir() and (p / f"{p.name}_seg.nii.gz").exists())
    if not names:
        raise SystemExit(f"no labelled case in {src}")
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        image, label = load_brats18(src / name)
        brain = np.any(image != 0, axis=0)
        box = crop_box(brain)
        arrays[f"{name}__image"] = quantise(zscore(image), brain)[(slice(None),) + box]
        arrays[f"{name}__label"] = label[box]
    arrays["names"] = np.array(names)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    out.write_bytes(lzma.compress(buffer.getvalue(), preset=6))
    return names


def load_packed(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (z-scored image [4, x, y, z] float32, label uint8), cropped to the brain."""
    with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes()))) as z:
        return {str(n): (dequantise(z[f"{n}__image"]), z[f"{n}__label"]) for n in z["names"]}


def folds(names: list[str], k: int) -> list[list[str]]:
    """k disjoint test folds over the sorted names (case i goes to fold i mod k)."""
    ordered = sorted(names)
    return [ordered[i::k] for i in range(k)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    names = pack(args.src, args.out)
    print(f"{len(names)} cases -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
