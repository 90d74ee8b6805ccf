"""A compact copy of the generator's derived template maps, for a machine without nilearn.

    python -m glioscope_training.template_pack pack --out runs/template-lean.npz      # here (nilearn)
    python -m glioscope_training.template_pack install --src runs/template-lean.npz   # there

The cache file `synth._template` writes holds float16 maps (about 100 MB); this one holds the
probability maps in 1/255 steps and the distance maps in 1/4 mm steps (about 10 MB), which
`install` turns back into the cache file. Cases generated from it differ from the nilearn-derived
ones by those roundings: fine for training, not for reproducing a seed's held-out case exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import synth

PROBABILITY_MAPS = ("t1", "gm", "wm", "mask")
DISTANCE_MAPS = ("depth", "vent_dist")
EXTRA = ("affine", "centre_mm", "wm_points", "gm_points", "vent_points")


def pack(out: Path) -> None:
    tpl = synth._template()
    lean = {k: np.rint(np.clip(getattr(tpl, k), 0, 1) * 255).astype(np.uint8) for k in PROBABILITY_MAPS}
    lean.update({k: np.rint(np.clip(getattr(tpl, k) * 4, 0, 65535)).astype(np.uint16) for k in DISTANCE_MAPS})
    lean.update({k: getattr(tpl, k) for k in EXTRA})
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **lean)


def install(src: Path) -> Path:
    """Writes the generator's cache file from a packed copy; returns its path."""
    with np.load(src) as z:
        maps = {k: (z[k].astype(np.float32) / 255).astype(np.float16) for k in PROBABILITY_MAPS}
        maps.update({k: (z[k].astype(np.float32) / 4).astype(np.float16) for k in DISTANCE_MAPS})
        maps.update({k: z[k] for k in EXTRA})
    path = synth._cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **maps)
    synth._template.cache_clear()
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pack").add_argument("--out", type=Path, required=True)
    sub.add_parser("install").add_argument("--src", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        pack(args.out)
        print(f"{args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    else:
        print(install(args.src))


if __name__ == "__main__":
    main()
