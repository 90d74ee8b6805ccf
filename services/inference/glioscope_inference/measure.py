"""Tumour measurements (glioscope_common.measurements.Measurements) from a label map.

Conventions:
- Volumes: voxel count x |det(affine)|, on the grid given (exact voxel counting).
- Diameters: on the whole tumour (WT = labels 1, 2, 3; the same region a radiologist measures on
  FLAIR for low-grade and on the enhancing lesion's outline for RANO -- we report WT and say so).
  "Axial" is the plane perpendicular to the S axis. On an axis-aligned grid (each voxel axis along
  one world axis) the slices along the S-aligned voxel axis are used directly; otherwise the label
  map is first resampled (nearest neighbour) to an axis-aligned RAS grid at the finest voxel spacing.
  On each axial slice the longest distance between WT voxel centres (convex hull in world x/y mm,
  brute force over hull vertices) is computed; the slice with the longest one wins. Centre-to-centre
  distances: an object of diameter D measures D to within one voxel.
- Perpendicular diameter: the longest chord of the same slice perpendicular to the maximum
  diameter (voxel centres binned along the maximum-diameter direction, extent across per bin).
- Centroid: mean of WT voxel centres, RAS mm of the grid given (the scanner's patient space).
- Location (hemisphere and lobes): from the WT voxels mapped into MNI152 space with the study's accepted
  registration to the atlas (glioscope_common.brain_atlas), one computation for both. Without an
  accepted registration the location is not available: hemisphere "undetermined" and `location_note`
  says why; no side is guessed from scanner coordinates.
- `measure_delivered` is the one entry point for what a clinician reads: the final label map on the grid
  that is delivered (the SEG and the NIfTI mask), after every post-processing step.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from glioscope_common.brain_atlas import locate_in_atlas
from glioscope_common.measurements import REGIONS, AtlasRegistration, LabelVolume, Measurements
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.sequence_regions import SequencePlan
from glioscope_common.volume import Volume
from glioscope_inference.atlas import apply_affine

__all__ = ["measure", "measure_delivered", "axial_diameters", "MAX_LOCATED_VOXELS"]

MAX_LOCATED_VOXELS = 200_000  # a larger tumour is located from an even subsample of its voxels
NOT_REGISTERED = "the study was not registered to the atlas"


def _slice_axis(affine: np.ndarray, tol: float = 1e-4) -> int | None:
    """The voxel axis along world S when every voxel axis is aligned with one world axis, else None."""
    m = affine[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    unit = np.abs(m / norms)
    if not np.all((unit > 1 - tol) | (unit < tol)):
        return None
    dominant = np.argmax(unit, axis=0)  # world axis per voxel axis
    if sorted(dominant.tolist()) != [0, 1, 2]:
        return None
    return int(np.flatnonzero(dominant == 2)[0])


def _max_distance(points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The exact largest distance between two of `points` (n x d) and the pair: the farthest pair lies on the
    convex hull, so all hull vertices are compared with each other (in chunks, bounded memory; never a
    thinned subset). Points Qhull cannot hull (fewer than d + 1 distinct ones, or all on one line, such as a
    line of voxels) are few, and are compared all with all."""
    candidates = np.unique(points, axis=0)
    if len(candidates) == 1:
        return 0.0, candidates[0], candidates[0]
    if len(candidates) > points.shape[1] + 1:
        try:
            candidates = candidates[ConvexHull(candidates).vertices]
        except QhullError:  # degenerate (collinear) input: no hull; compare every distinct point
            pass
    return _farthest_pair(candidates)


def _farthest_pair(candidates: np.ndarray, max_pairs: int = 4_000_000) -> tuple[float, np.ndarray, np.ndarray]:
    n = len(candidates)
    chunk = max(1, max_pairs // n)
    best, a, b = -1.0, 0, 0
    for start in range(0, n, chunk):
        block = candidates[start : start + chunk]
        squared = ((block[:, None, :] - candidates[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmax(squared)), squared.shape)
        if squared[i, j] > best:
            best, a, b = float(squared[i, j]), start + int(i), int(j)
    return float(np.sqrt(best)), candidates[a], candidates[b]


def _perpendicular_chord(points: np.ndarray, direction: np.ndarray, bin_mm: float) -> float:
    if len(points) < 2 or not np.any(direction):
        return 0.0
    u = direction / np.linalg.norm(direction)
    v = np.array([-u[1], u[0]])
    along, across = points @ u, points @ v
    bins = np.floor((along - along.min()) / bin_mm).astype(int)
    order = np.argsort(bins, kind="stable")
    bins, across = bins[order], across[order]
    edges = np.flatnonzero(np.diff(bins)) + 1
    lo = np.minimum.reduceat(across, np.r_[0, edges])
    hi = np.maximum.reduceat(across, np.r_[0, edges])
    return float((hi - lo).max())


def axial_diameters(mask: np.ndarray, affine: np.ndarray) -> tuple[float, float, int | None, np.ndarray | None]:
    """(max axial diameter mm, perpendicular diameter mm, slice index along the S-aligned axis,
    world midpoint of the max diameter) for a boolean mask on an axis-aligned grid."""
    axis = _slice_axis(affine)
    if axis is None:
        raise ValueError("axial_diameters needs an axis-aligned grid")
    in_plane = [a for a in range(3) if a != axis]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    bin_mm = float(min(spacing[in_plane]))
    coords = np.argwhere(mask)
    if coords.size == 0:
        return 0.0, 0.0, None, None
    best = (-1.0, 0.0, None, None)
    for index in np.unique(coords[:, axis]):
        ijk = coords[coords[:, axis] == index].astype(float)
        world = ijk @ affine[:3, :3].T + affine[:3, 3]
        xy = world[:, :2]
        diameter, a, b = _max_distance(xy)
        if diameter > best[0]:
            perpendicular = _perpendicular_chord(xy, b - a, bin_mm) if diameter > 0 else 0.0
            midpoint = np.array([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, world[0, 2]])
            best = (diameter, perpendicular, int(index), midpoint)
    return best  # type: ignore[return-value]


def measure(
    label_map: np.ndarray,
    affine: np.ndarray,
    metadata: ModelMetadata,
    *,
    registration: AtlasRegistration | None = None,
    regions: tuple[str, ...] = tuple(REGIONS),
) -> Measurements:
    """`regions`: the regions reported; the others get no volume (they are not measured values)."""
    label_map = np.asarray(label_map)
    affine = np.asarray(affine, dtype=float)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = np.bincount(label_map.ravel().astype(np.int64), minlength=256)
    label_volumes = [
        LabelVolume(label=label.value, name=label.name, volume_ml=float(counts[label.value] * voxel_ml))
        for label in metadata.labels
    ]
    region_volumes = {name: float(sum(counts[v] for v in values) * voxel_ml)
                      for name, values in REGIONS.items() if name in regions}

    whole = label_map > 0
    if not whole.any():
        return Measurements(
            label_volumes=label_volumes, region_volumes_ml=region_volumes,
            max_axial_diameter_mm=0.0, perpendicular_diameter_mm=0.0, bidimensional_product_mm2=0.0,
            tumour_detected=False, atlas_registration=registration,
        )

    coords = np.argwhere(whole).astype(float)
    world = coords @ affine[:3, :3].T + affine[:3, 3]
    centroid = world.mean(axis=0)
    location, note = None, NOT_REGISTERED
    if registration is not None and registration.accepted:
        step = max(1, int(np.ceil(len(world) / MAX_LOCATED_VOXELS)))
        location = locate_in_atlas(apply_affine(np.asarray(registration.world_to_mni), world[::step]))
        note = ""
    elif registration is not None:
        note = f"the registration to the atlas was rejected: {registration.note}"

    grid_mask, grid_affine = whole, affine
    if _slice_axis(affine) is None:
        from glioscope_inference.preprocess import reference_grid, resample

        spacing = float(min(np.linalg.norm(affine[:3, :3], axis=0)))
        source = Volume(whole.astype(np.uint8), affine)
        grid_affine, shape = reference_grid(source, spacing)
        grid_mask = resample(source, grid_affine, shape, order=0) > 0
    diameter, perpendicular, slice_index, _ = axial_diameters(grid_mask, grid_affine)

    return Measurements(
        label_volumes=label_volumes,
        region_volumes_ml=region_volumes,
        max_axial_diameter_mm=round(diameter, 2),
        perpendicular_diameter_mm=round(perpendicular, 2),
        bidimensional_product_mm2=round(diameter * perpendicular, 1),
        axial_slice_index=slice_index,
        centroid_ras_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
        hemisphere=location.hemisphere if location else "undetermined",
        location=location,
        location_note=note,
        atlas_registration=registration,
        tumour_detected=True,
    )


def measure_delivered(
    labels: np.ndarray,
    reference: Volume,
    metadata: ModelMetadata,
    *,
    registration: AtlasRegistration | None,
    input_warnings: list[str],
    plan: SequencePlan | None = None,
) -> Measurements:
    """The measurements of the label map that is delivered, on its own grid (the T1c's: volumes are exact
    voxel counts there). `axial_slice_index` is a k index of that grid: the measured slice when the grid
    is axial, else the k of the tumour centroid. `plan`: the sequences used and the regions they support
    (None: a complete study); `metadata.labels` are the delivered labels."""
    regions = plan.regions if plan is not None else tuple(REGIONS)
    measurements = measure(labels, reference.affine, metadata, registration=registration, regions=regions)
    measurements = measurements.model_copy(update={"input_warnings": list(input_warnings)})
    if plan is not None:
        measurements = measurements.model_copy(update={
            "sequences_used": list(plan.used), "sequences_missing": list(plan.missing),
            "regions_reported": list(plan.regions), "regions_not_reported": dict(plan.not_reported),
        })
    if measurements.centroid_ras_mm is not None and _slice_axis(reference.affine) != 2:
        ijk = np.linalg.solve(reference.affine, np.array([*measurements.centroid_ras_mm, 1.0]))[:3]
        k = int(np.clip(round(float(ijk[2])), 0, reference.shape[2] - 1))
        measurements = measurements.model_copy(update={"axial_slice_index": k})
    return measurements
