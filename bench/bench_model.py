"""Benchmark the exported segmentation model with onnxruntime on CPU.

Prints the seconds for one BraTS-size case (4 x 240 x 240 x 155, 1 mm) with sliding-window
inference (patch size, overlap and test-time flips from metadata.json), voxels per second and the
model file size.

    python bench/bench_model.py [--model model_repository/glioscope_unet] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

from glioscope_training.infer import ort_predictor, sliding_window, zscore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "model_repository" / "glioscope_unet"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    model_dir = Path(args.model)
    meta = json.loads((model_dir / "metadata.json").read_text())
    onnx_path = model_dir / meta.get("onnx_file", "1/model.onnx")
    patch, overlap = tuple(meta["patch_size"]), float(meta["overlap"])
    predict = ort_predictor(onnx_path, threads=args.threads)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1000, (4, 240, 240, 155)).astype(np.float32)
    flip_axes = [int(a) for a in meta.get("flip_axes", [])]  # test-time augmentation: one pass each
    in_graph = meta.get("output_type") == "probabilities"  # activation (and graph_flip_axes) inside
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        x = zscore(image)
        sliding_window(predict, x, patch, overlap, probabilities=in_graph)
        for axis in flip_axes:
            sliding_window(predict, np.ascontiguousarray(np.flip(x, axis=1 + axis)), patch, overlap, probabilities=in_graph)
        times.append(time.perf_counter() - t)
    sec = min(times)
    n_vox = 240 * 240 * 155
    print(f"model: {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB), patch {patch}, overlap {overlap}, "
          f"{args.threads} threads, {1 + len(flip_axes)} pass(es) (flip_axes {flip_axes}), "
          f"mirrored inside the graph along {meta.get('graph_flip_axes', [])}")
    print(f"seconds per BraTS-size case (4x240x240x155): {sec:.2f} (runs: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"voxels per second: {n_vox / sec:,.0f}")
    print(f"model file MB: {onnx_path.stat().st_size / 1e6:.2f}")


if __name__ == "__main__":
    main()
