"""Sliding-window inference with Gaussian importance weighting (as nnU-Net).

Patches are always exactly `patch_size` (Triton's dynamic batcher needs equal shapes); images
smaller than a patch are zero-padded. Accumulation is in place in float32.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from glioscope_common.inference_backend import InferenceBackend

__all__ = ["sliding_window_inference", "gaussian_importance_map", "window_starts"]


@lru_cache(maxsize=8)
def gaussian_importance_map(patch_size: tuple[int, int, int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Separable Gaussian centred on the patch, sigma = patch / 8, max 1, floor at the smallest non-zero value."""
    axes = []
    for p in patch_size:
        x = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
        sigma = max(p * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    weight = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weight /= weight.max()
    weight = np.maximum(weight, max(float(weight[weight > 0].min()), 1e-4))
    out = weight.astype(np.float32)
    out.setflags(write=False)
    return out


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Evenly spaced starts covering [0, size) with steps of at most patch * (1 - overlap)."""
    if size <= patch:
        return [0]
    step = max(1, int(round(patch * (1.0 - overlap))))
    n = int(np.ceil((size - patch) / step)) + 1
    return sorted({int(round(i * (size - patch) / (n - 1))) for i in range(n)})


def _activation(logits: np.ndarray, output_type: str) -> np.ndarray:
    """Probabilities for the model's output; may return `logits` itself (read-only, e.g. a view of a
    received message) when the model outputs probabilities."""
    logits = logits.astype(np.float32, copy=False)
    if output_type == "probabilities":
        return logits
    if output_type == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def sliding_window_inference(
    image: np.ndarray,
    backend: InferenceBackend,
    patch_size: Sequence[int],
    overlap: float,
    batch_size: int = 2,
    progress: Callable[[float], None] | None = None,
    *,
    output_type: str = "softmax",
    requests_in_flight: int = 1,
) -> np.ndarray:
    """Probabilities [L, X, Y, Z] float32 (softmax over the model's output, sigmoid, or the model's
    own probabilities, per `output_type`) for image [C, X, Y, Z].

    `requests_in_flight` > 1 sends that many batches to the backend at once (its `infer` must be
    thread-safe); the result is the same as with one."""
    if image.ndim != 4:
        raise ValueError(f"image must be [C, X, Y, Z], got {image.shape}")
    patch = tuple(int(p) for p in patch_size)
    shape = image.shape[1:]
    pad = [(0, 0)] + [((max(0, p - s)) // 2, max(0, p - s) - (max(0, p - s)) // 2) for p, s in zip(patch, shape)]
    padded = np.pad(image.astype(np.float32, copy=False), pad) if any(sum(p) for p in pad) else image
    full = padded.shape[1:]
    starts = list(itertools.product(*[window_starts(s, p, overlap) for s, p in zip(full, patch)]))
    weight = gaussian_importance_map(patch)

    accumulator: np.ndarray | None = None
    weight_sum = np.zeros(full, dtype=np.float32)
    total = len(starts)
    batch_size = max(1, int(batch_size))
    chunks = [starts[first : first + batch_size] for first in range(0, total, batch_size)]

    def infer(chunk: list[tuple[int, int, int]]) -> np.ndarray:
        batch = np.stack(
            [padded[:, i : i + patch[0], j : j + patch[1], k : k + patch[2]] for i, j, k in chunk]
        ).astype(np.float32, copy=False)
        logits = np.asarray(backend.infer(np.ascontiguousarray(batch)))
        if logits.ndim != 5 or logits.shape[0] != len(chunk) or tuple(logits.shape[2:]) != patch:
            raise ValueError(f"model returned {logits.shape} for a batch {batch.shape}")
        return logits

    def accumulate(chunk: list[tuple[int, int, int]], logits: np.ndarray, done: int) -> None:
        nonlocal accumulator
        probs = _activation(logits, output_type)
        if accumulator is None:
            accumulator = np.zeros((probs.shape[1],) + full, dtype=np.float32)
        for (i, j, k), p in zip(chunk, probs):
            region = (slice(i, i + patch[0]), slice(j, j + patch[1]), slice(k, k + patch[2]))
            p = np.multiply(p, weight, out=p if p.flags.writeable else None)
            accumulator[(slice(None),) + region] += p
            weight_sum[region] += weight
        if progress is not None:
            progress(min(1.0, done / total))

    done = 0
    if requests_in_flight <= 1:
        for chunk in chunks:
            done += len(chunk)
            accumulate(chunk, infer(chunk), done)
    else:
        # Several requests in flight (a remote server): the next patch is sent while the server
        # computes this one. Results are accumulated in order, so the sum does not depend on timing.
        with ThreadPoolExecutor(max_workers=requests_in_flight, thread_name_prefix="infer") as pool:
            pending: deque[tuple[list[tuple[int, int, int]], Future[np.ndarray]]] = deque()
            for chunk in chunks:
                pending.append((chunk, pool.submit(infer, chunk)))
                if len(pending) >= requests_in_flight:
                    oldest, future = pending.popleft()
                    done += len(oldest)
                    accumulate(oldest, future.result(), done)
            while pending:
                oldest, future = pending.popleft()
                done += len(oldest)
                accumulate(oldest, future.result(), done)
    assert accumulator is not None
    accumulator /= weight_sum
    crop = tuple(slice(before, before + s) for (before, _), s in zip(pad[1:], shape))
    if full == shape:
        return accumulator
    return np.ascontiguousarray(accumulator[(slice(None),) + crop])
