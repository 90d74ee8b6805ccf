"""From probabilities to a clean BraTS label map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from glioscope_common.model_metadata import ModelMetadata

__all__ = ["label_lookup", "probabilities_to_labels", "clean_labels"]


def label_lookup(metadata: ModelMetadata) -> np.ndarray:
    """Output channel -> label value: channel 0 is background, channel c >= 1 is metadata.labels[c - 1]."""
    return np.array([0] + [label.value for label in metadata.labels], dtype=np.uint8)


def probabilities_to_labels(probabilities: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """argmax over channels of [L, X, Y, Z] -> uint8 label values."""
    lut = label_lookup(metadata)
    if probabilities.shape[0] != lut.size:
        raise ValueError(f"model gives {probabilities.shape[0]} channels, metadata has {lut.size - 1} labels + background")
    return lut[np.argmax(probabilities, axis=0)]


def clean_labels(
    labels: np.ndarray,
    voxel_volume_mm3: float,
    *,
    min_component_ml: float = 1.0,
    relative_min: float = 0.1,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Connected-component clean-up on the whole tumour (WT = any label > 0), BraTS-aware.

    Keeps the largest WT component (26-connectivity) plus every other component that is at least
    `min_component_ml` AND at least `relative_min` of the largest (multifocal tumours survive,
    small false positives, e.g. by the ventricles, do not). Labels survive only inside the kept WT;
    nothing outside `mask` (the brain mask) is kept either. Returns a new uint8 array.
    """
    out = np.asarray(labels).astype(np.uint8, copy=True)
    if mask is not None:
        out[~mask] = 0
    whole = out > 0
    if not whole.any():
        return out
    components, n = ndimage.label(whole, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return out
    sizes = np.bincount(components.ravel(), minlength=n + 1)[1:].astype(float)
    largest = float(sizes.max())
    min_voxels = max(min_component_ml * 1000.0 / max(voxel_volume_mm3, 1e-9), relative_min * largest)
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sizes >= min_voxels
    keep[1 + int(np.argmax(sizes))] = True
    out[~keep[components]] = 0
    return out
