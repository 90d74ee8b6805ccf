"""Minimal sliding-window inference (numpy + onnxruntime, or any callable) for evaluation.

The production path is `glioscope segment` in services/inference; this is the training side's
own short version, following the same contract (metadata.json).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")


def zscore(image: np.ndarray, clip: float = 5.0) -> np.ndarray:
    """Per-channel z-score over voxels where any channel is non-zero (skull-stripped data)."""
    image = np.asarray(image, np.float32)
    mask = np.any(image != 0, axis=0)
    out = np.zeros_like(image)
    if not mask.any():
        return out
    for c in range(image.shape[0]):
        v = image[c][mask]
        out[c] = (image[c] - v.mean()) / max(float(v.std()), 1e-6)
        out[c][~mask] = 0
    return np.clip(out, -clip, clip)


def _starts(size: int, patch: int, step: int) -> list[int]:
    if size <= patch:
        return [0]
    n = int(np.ceil((size - patch) / step)) + 1
    return sorted({int(round(i * (size - patch) / (n - 1))) for i in range(n)})


def _gaussian_weight(patch: tuple[int, int, int]) -> np.ndarray:
    axes = [np.exp(-0.5 * ((np.arange(p) - (p - 1) / 2) / (p / 8 * 1.5)) ** 2) for p in patch]
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return np.maximum(w / w.max(), 1e-3).astype(np.float32)


def sliding_window(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    patch: tuple[int, int, int],
    overlap: float = 0.25,
    batch: int = 1,
    n_classes: int = 4,
    probabilities: bool = False,
) -> np.ndarray:
    """Softmax probabilities [C, X, Y, Z] for a normalised image [4, X, Y, Z]; `probabilities`: the
    model outputs them itself (metadata output_type "probabilities"), else logits."""
    shape = image.shape[1:]
    pad = [(0, 0)] + [(0, max(0, p - s)) for p, s in zip(patch, shape)]
    img = np.pad(image, pad)
    full = img.shape[1:]
    steps = [max(1, int(p * (1 - overlap))) for p in patch]
    starts = list(itertools.product(*[_starts(s, p, st) for s, p, st in zip(full, patch, steps)]))
    acc = np.zeros((n_classes,) + full, np.float32)
    wsum = np.zeros(full, np.float32)
    w = _gaussian_weight(patch)
    for b in range(0, len(starts), batch):
        chunk = starts[b : b + batch]
        x = np.stack([img[:, i : i + patch[0], j : j + patch[1], k : k + patch[2]] for i, j, k in chunk])
        prob = predict(np.ascontiguousarray(x, dtype=np.float32))
        if not probabilities:
            prob = np.exp(prob - prob.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
        for (i, j, k), p in zip(chunk, prob):
            acc[:, i : i + patch[0], j : j + patch[1], k : k + patch[2]] += p * w
            wsum[i : i + patch[0], j : j + patch[1], k : k + patch[2]] += w
    acc /= wsum
    return acc[:, : shape[0], : shape[1], : shape[2]]


def ort_predictor(onnx_path: str | Path, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32  # float16 I/O models

    inp = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {inp: x.astype(dtype, copy=False)})[0].astype(np.float32, copy=False)

    return run


def largest_components(seg: np.ndarray, keep_fraction: float = 0.1, min_voxels: int = 1000) -> np.ndarray:
    """Keep the largest whole-tumour component (26-connected) and others that are at least
    `min_voxels` (1 mL at 1 mm) and `keep_fraction` of the largest, as the inference service does."""
    from scipy import ndimage

    wt = seg > 0
    lab, n = ndimage.label(wt, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return seg
    sizes = ndimage.sum(wt, lab, range(1, n + 1))
    keep = 1 + np.flatnonzero((sizes >= keep_fraction * sizes.max()) & (sizes >= min_voxels))
    keep = np.union1d(keep, [1 + int(np.argmax(sizes))])
    out = seg.copy()
    out[~np.isin(lab, keep)] = 0
    return out


def segment(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    patch: tuple[int, int, int],
    overlap: float = 0.25,
    flip_tta: bool = False,
    postprocess: bool = True,
    probabilities: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Label map (uint8, BraTS labels) and probabilities for a raw 4-channel image [4, X, Y, Z]."""
    x = zscore(image)
    prob = sliding_window(predict, x, patch, overlap, probabilities=probabilities)
    if flip_tta:
        prob += sliding_window(predict, x[:, ::-1].copy(), patch, overlap, probabilities=probabilities)[:, ::-1]
        prob /= 2
    seg = prob.argmax(0).astype(np.uint8)
    seg[~np.any(image != 0, axis=0)] = 0
    if postprocess:
        seg = largest_components(seg)
    return seg, prob
