"""Geometry and intensity preparation: model grid, resampling, rigid co-registration, normalisation.

All geometry is in world RAS+ millimetres through `Volume.affine` (voxel [i, j, k] -> RAS mm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from glioscope_common.model_metadata import Normalisation
from glioscope_common.volume import Volume

__all__ = [
    "reference_grid",
    "resample",
    "resample_volume",
    "should_coregister",
    "normalise",
    "foreground_mask",
]


# ---------------------------------------------------------------------------------------------
# grids and resampling
# ---------------------------------------------------------------------------------------------
def _corners_world(volume_shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    n = np.asarray(volume_shape, dtype=float) - 1.0
    corners = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    return corners @ affine[:3, :3].T + affine[:3, 3]


def reference_grid(volume: Volume, spacing_mm: Sequence[float] | float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An axis-aligned RAS+ grid (diagonal affine, positive spacing) covering the volume's voxel centres.

    Axis i runs along +x (RAS+: towards the patient's Right), j along +y (Anterior), k along +z
    (Superior). Voxel (0, 0, 0) is at the minimum corner of the bounding box of the
    source voxel centres; the last voxel reaches or passes the maximum corner.
    """
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,)).copy()
    if np.any(spacing <= 0):
        raise ValueError(f"spacing must be positive, got {spacing_mm}")
    corners = _corners_world(volume.shape, volume.affine)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    shape = tuple(int(np.ceil((h - l) / s - 1e-6)) + 1 for l, h, s in zip(lo, hi, spacing))
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = lo
    return affine, shape  # type: ignore[return-value]


def resample(
    volume: Volume,
    affine: np.ndarray,
    shape: Sequence[int],
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Sample `volume` on the grid (affine, shape); float32 (or the input dtype for order 0 integer data).

    One `scipy.ndimage.affine_transform` with the combined matrix inv(volume.affine) @ affine.
    """
    matrix = np.linalg.inv(volume.affine) @ np.asarray(affine, dtype=float)
    data = volume.data
    integer_nearest = order == 0 and np.issubdtype(data.dtype, np.integer)
    if not integer_nearest and data.dtype != np.float32:
        data = data.astype(np.float32)
    out_dtype = data.dtype
    if _is_identity(matrix) and tuple(shape) == volume.shape:
        return np.array(data, dtype=out_dtype, copy=True)
    fast = _permutation_resample(data, matrix, tuple(int(s) for s in shape), cval)
    if fast is not None:
        return fast
    return ndimage.affine_transform(
        data,
        matrix[:3, :3],
        offset=matrix[:3, 3],
        output_shape=tuple(int(s) for s in shape),
        output=out_dtype,
        order=order,
        mode="constant",
        cval=cval,
        prefilter=order > 1,
    )


def resample_volume(volume: Volume, affine: np.ndarray, shape: Sequence[int], order: int = 1) -> Volume:
    return Volume(resample(volume, affine, shape, order=order), np.asarray(affine, dtype=float))


def _permutation_resample(data: np.ndarray, matrix: np.ndarray, shape: tuple[int, int, int], cval: float) -> np.ndarray | None:
    """Exact fast path when output voxels land exactly on input voxels through axis flips /
    permutations and integer shifts (e.g. an LPS-stored BraTS volume onto its RAS grid): pure
    indexing, identical to any interpolation order. None when not applicable."""
    m = matrix[:3, :3]
    if not np.allclose(m, np.round(m), atol=1e-6) or not np.allclose(matrix[:3, 3], np.round(matrix[:3, 3]), atol=1e-6):
        return None
    r = np.round(m).astype(int)
    if not (np.all(np.abs(r).sum(axis=1) == 1) and np.all(np.abs(r).sum(axis=0) == 1)):
        return None
    offset = np.round(matrix[:3, 3]).astype(int)
    # source axis a takes output axis b(a) with a sign: src_a = sign * out_b + offset_a
    out_axis = [int(np.flatnonzero(r[a])[0]) for a in range(3)]
    order = [out_axis.index(b) for b in range(3)]  # source axis feeding output axis b
    src = data.transpose(order)
    indices, valid = [], []
    for b in range(3):
        a = order[b]
        idx = r[a, b] * np.arange(shape[b]) + offset[a]
        ok = (idx >= 0) & (idx < data.shape[a])
        indices.append(np.clip(idx, 0, data.shape[a] - 1))
        valid.append(ok)
    out = src[np.ix_(*indices)].astype(data.dtype, copy=False)
    if not all(v.all() for v in valid):
        out = np.array(out, copy=True)
        for b, v in enumerate(valid):
            if not v.all():
                sl = [slice(None)] * 3
                sl[b] = ~v
                out[tuple(sl)] = cval
    return np.ascontiguousarray(out)


def _is_identity(matrix: np.ndarray, tol: float = 1e-6) -> bool:
    return bool(np.allclose(matrix, np.eye(4), atol=tol))


def _same_grid(a: Volume, b: Volume, tol_mm: float = 0.01) -> bool:
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, atol=tol_mm))


def _box(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    corners = _corners_world(volume.shape, volume.affine)
    return corners.min(axis=0), corners.max(axis=0)


def should_coregister(
    volumes: Mapping[str, Volume],
    reference: str = "T1c",
    frame_of_reference_uids: Mapping[str, str] | None = None,
    min_overlap: float = 0.8,
) -> tuple[bool, str]:
    """Whether the non-reference series need rigid co-registration, and why.

    Skip (False) when either
      (a) every series lies on exactly the reference grid (same shape, affines equal within
          0.01 mm: BraTS-style pre-registered NIfTI), or
      (b) every series carries the same non-empty FrameOfReferenceUID (one scanner session, the
          scanner's coordinates are shared) AND the geometry agrees: each series' world bounding
          box overlaps the reference box by at least `min_overlap` of the smaller box's volume.
    Otherwise (True): different frames of reference, unknown frames (NIfTI on different grids),
    or fields of view that barely overlap.
    """
    ref = volumes[reference]
    others = [v for name, v in volumes.items() if name != reference]
    if all(_same_grid(v, ref) for v in others):
        return False, "all series share the reference grid"
    uids = dict(frame_of_reference_uids or {})
    names = list(volumes)
    if uids and all(uids.get(n) for n in names) and len({uids[n] for n in names}) == 1:
        rlo, rhi = _box(ref)
        for v in others:
            lo, hi = _box(v)
            inter = np.prod(np.clip(np.minimum(hi, rhi) - np.maximum(lo, rlo), 0, None))
            smaller = min(np.prod(np.maximum(hi - lo, 1e-3)), np.prod(np.maximum(rhi - rlo, 1e-3)))
            if inter < min_overlap * smaller:
                return True, "same frame of reference but the fields of view do not agree"
        return False, "all series share one FrameOfReferenceUID and their fields of view agree"
    return True, "series are on different grids without a shared frame of reference"


# ---------------------------------------------------------------------------------------------
# intensity normalisation
# ---------------------------------------------------------------------------------------------
# Share of an image's border voxels that must hold one value for it to be the image's constant background.
CONSTANT_BACKGROUND_SHARE = 0.5


def constant_background(data: np.ndarray) -> float:
    """The value that fills the image's border when one value does (a skull-stripped image: 0, or any
    constant after a linear rescale or a z-scoring), else 0.0 (raw images: noise, or zero-filled)."""
    faces = np.concatenate([data[0].ravel(), data[-1].ravel(), data[:, 0].ravel(), data[:, -1].ravel(),
                            data[:, :, 0].ravel(), data[:, :, -1].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    best = int(np.argmax(counts))
    return float(values[best]) if counts[best] >= CONSTANT_BACKGROUND_SHARE * faces.size else 0.0


def without_constant_background(volume: Volume) -> Volume:
    """The volume shifted so that its constant background is 0: "brain = non-zero voxels" (the
    training convention) then holds for any linear rescale or offset of the intensities, and the
    z-score over that mask makes the model's input the same."""
    background = constant_background(np.asarray(volume.data))
    if background == 0.0:
        return volume
    return Volume(np.asarray(volume.data, dtype=np.float32) - np.float32(background), volume.affine)


def _otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight1 = np.cumsum(hist)
    weight2 = np.cumsum(hist[::-1])[::-1]
    mean1 = np.cumsum(hist * centres) / np.maximum(weight1, 1)
    mean2 = (np.cumsum((hist * centres)[::-1]) / np.maximum(weight2[::-1], 1))[::-1]
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    # split after bin i -> threshold at the bin's upper edge; centre of a plateau of equal optima
    best = np.flatnonzero(variance >= variance.max() * (1 - 1e-9))
    i = int(best[len(best) // 2])
    return float(edges[i + 1])


def foreground_mask(channels: np.ndarray, method: str = "foreground") -> np.ndarray:
    """Voxels that belong to the head/brain: "nonzero" (any channel != 0) or "foreground"
    (union of each channel's Otsu foreground, holes filled, largest connected component)."""
    if method == "nonzero":
        return np.any(channels != 0, axis=0)
    mask = np.zeros(channels.shape[1:], dtype=bool)
    for channel in channels:
        values = channel[channel != 0]
        if values.size < 10:
            continue
        mask |= channel > _otsu_threshold(values)
    if not mask.any():
        return np.any(channels != 0, axis=0)
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def normalise(channels: np.ndarray, spec: Normalisation) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel z-score over the mask, clipped to ±spec.clip, 0 outside the mask.

    An all-zero channel (a missing sequence) stays exactly 0. Returns (float32 [C, X, Y, Z], brain mask
    bool [X, Y, Z]). The mask is `spec.mask`:
    "nonzero" for skull-stripped data (as in training), "foreground" (Otsu) for raw data.
    """
    if spec.method != "zscore":
        raise ValueError(f"unsupported normalisation {spec.method}")
    channels = np.asarray(channels, dtype=np.float32)
    mask = foreground_mask(channels, spec.mask)
    out = np.zeros_like(channels, dtype=np.float32)
    if not mask.any():
        return out, mask
    for c in range(channels.shape[0]):
        if not channels[c].any():  # an absent sequence: the model takes it as exactly 0 (sequence dropout)
            continue
        values = channels[c][mask]
        mean = float(values.mean(dtype=np.float64))
        std = max(float(values.std(dtype=np.float64)), 1e-6)
        np.subtract(channels[c], mean, out=out[c])
        out[c] /= std
        np.clip(out[c], -spec.clip, spec.clip, out=out[c])
        out[c][~mask] = 0.0
    return out, mask
