"""Key images (axial, coronal, sagittal PNGs) through the tumour centroid, Pillow + numpy only.

Radiological convention: axial and coronal show the patient's right on the image's left; axial has
anterior at the top, coronal and sagittal superior at the top, sagittal anterior on the left.
"""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from glioscope_common.model_metadata import ModelMetadata

__all__ = ["render_key_images", "to_ras"]

ALPHA = 0.45
MIN_SIZE_PX = 256


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder/flip voxel axes so that axis 0 grows towards R, 1 towards A, 2 towards S (nearest
    orientation for oblique grids); returns (data, spacing per new axis)."""
    ornt = nib.orientations.io_orientation(affine)
    data = nib.orientations.apply_orientation(data, ornt)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    new_spacing = np.empty(3)
    for axis, (target, _flip) in enumerate(ornt):
        new_spacing[int(target)] = spacing[axis]
    return data, new_spacing


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _resize(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    image = Image.fromarray(array)
    return np.asarray(image.resize(size, resample=resample))


def _compose(
    background: np.ndarray, labels: np.ndarray, pixel_mm: tuple[float, float], colours: dict[int, tuple[int, int, int]]
) -> np.ndarray:
    """background [rows, cols] in [0, 1], labels [rows, cols] -> RGB uint8, physically proportioned."""
    rows, cols = background.shape
    height_mm, width_mm = rows * pixel_mm[0], cols * pixel_mm[1]
    scale = max(1.0, MIN_SIZE_PX / max(1e-6, min(height_mm, width_mm)))
    size = (max(1, int(round(width_mm * scale))), max(1, int(round(height_mm * scale))))
    grey = _resize((background * 255).astype(np.uint8), size, Image.BILINEAR).astype(np.float32)
    lab = _resize(labels.astype(np.uint8), size, Image.NEAREST)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for value, colour in colours.items():
        region = lab == value
        if not region.any():
            continue
        colour_arr = np.asarray(colour, dtype=np.float32)
        rgb[region] = (1 - ALPHA) * rgb[region] + ALPHA * colour_arr
        contour = region & ~ndimage.binary_erosion(region, iterations=1, border_value=0)
        rgb[contour] = colour_arr
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render_key_images(
    background: np.ndarray,
    label_map: np.ndarray,
    affine: np.ndarray,
    metadata: ModelMetadata,
) -> dict[str, bytes]:
    """PNG bytes for "axial", "coronal", "sagittal" through the tumour centroid (image centre if none)."""
    if background.shape != label_map.shape:
        raise ValueError("background and label map must share a grid")
    bg, spacing = to_ras(np.asarray(background, dtype=np.float32), np.asarray(affine, dtype=float))
    lab, _ = to_ras(np.asarray(label_map), np.asarray(affine, dtype=float))

    values = bg[bg != 0] if np.any(bg != 0) else bg.ravel()
    lo, hi = np.percentile(values, [1.0, 99.0]) if values.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    bg = np.clip((bg - lo) / (hi - lo), 0.0, 1.0)

    if np.any(lab > 0):
        centre = np.round(np.argwhere(lab > 0).mean(axis=0)).astype(int)
    else:
        centre = np.array(lab.shape) // 2
    x, y, z = (int(c) for c in centre)
    colours = {label.value: tuple(label.color_rgb) for label in metadata.labels}
    sx, sy, sz = spacing

    # Each view is [rows, cols]; index 0 of a flipped axis is the most R / A / S voxel.
    views = {
        # rows: anterior -> posterior, cols: patient right -> left
        "axial": (bg[::-1, ::-1, z].T, lab[::-1, ::-1, z].T, (sy, sx)),
        # rows: superior -> inferior, cols: patient right -> left
        "coronal": (bg[::-1, y, ::-1].T, lab[::-1, y, ::-1].T, (sz, sx)),
        # rows: superior -> inferior, cols: anterior -> posterior
        "sagittal": (bg[x, ::-1, ::-1].T, lab[x, ::-1, ::-1].T, (sz, sy)),
    }
    return {name: _png(_compose(b, l, px, colours)) for name, (b, l, px) in views.items()}
