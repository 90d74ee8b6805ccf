"""Pre-generate synthetic training cases into a folder (run beside training, in the background).

    nice -n 10 python -m glioscope_training.cache --dir training/runs/cache --start 0 --count 5000
    nice -n 10 python -m glioscope_training.cache --dir training/runs/full --full --start 0 --count 400

Each file `case_<seed>.npz` holds `image` (4, X, Y, Z) (raw intensities; float16, float32 for
`--heldout`), `label` uint8 and `generator_version`: a file from another version of the generator
is stale (the same seed makes another case) and is made again.
Default: 112^3 crops, 70 % centred near the tumour, 30 % anywhere around it. `--full`: whole
brains on a `FULL_SHAPE` grid with every tumour type (training then samples patches anywhere in
them and normalises over the whole brain, exactly as inference does).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .synth import GENERATOR_VERSION, SEQUENCES, generate_case, synthesize

FULL_SHAPE = (192, 224, 176)  # 1 mm; holds the (scaled, rotated) template brain with a margin


def make_crop(seed: int, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    far = np.random.default_rng(seed + 17).uniform() < 0.3
    case = synthesize(seed, (size,) * 3, around_tumour=True, require_all_labels=False,
                      offset_sd=35.0 if far else None)
    image = np.stack([case.images[s] for s in SEQUENCES]).astype(np.float16)
    return image, case.label


def make_full(seed: int) -> tuple[np.ndarray, np.ndarray]:
    case = synthesize(seed, FULL_SHAPE, around_tumour=False, require_all_labels=False)
    image = np.stack([case.images[s] for s in SEQUENCES]).astype(np.float16)
    return image, case.label


def make_heldout(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A BraTS-size case exactly as evaluation makes it, float32 (validation and evaluation)."""
    case = generate_case(seed)
    return np.stack([case.images[s] for s in SEQUENCES]).astype(np.float32), case.label


class StaleCase(ValueError):
    """A cached case written by another version of the generator."""


def read_case(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`image` and `label` of a cached case; StaleCase when another generator version wrote it."""
    with np.load(path) as z:
        version = int(z["generator_version"]) if "generator_version" in z.files else 1
        if version != GENERATOR_VERSION:
            raise StaleCase(f"{path} was made by generator version {version}, this is {GENERATOR_VERSION}")
        return z["image"], z["label"]


def is_current(path: Path) -> bool:
    try:
        read_case(path)
    except StaleCase:
        return False
    except (OSError, ValueError, KeyError):  # unreadable: make it again
        return False
    return True


def write(seed: int, folder: Path, size: int, full: bool = False, heldout: bool = False) -> None:
    path = folder / f"case_{seed}.npz"
    if path.exists() and is_current(path):
        return
    if heldout:
        image, label = make_heldout(seed)
    else:
        image, label = make_full(seed) if full else make_crop(seed, size)
    tmp = folder / f".tmp_{seed}_{os.getpid()}.npz"
    np.savez(tmp, image=image, label=label, generator_version=np.int32(GENERATOR_VERSION))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--step", type=int, default=1, help="seed stride (run N writers with --step N)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--full", action="store_true", help="whole brains instead of crops")
    ap.add_argument("--heldout", action="store_true", help="BraTS-size cases as evaluation makes them")
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(args.start, args.start + args.count, args.step):
        write(seed, folder, args.size, args.full, args.heldout)


if __name__ == "__main__":
    main()
