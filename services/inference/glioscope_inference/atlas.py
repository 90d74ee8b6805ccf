"""Affine registration of a study's brain to the MNI152 template (SimpleITK), for the tumour's location.

Why SimpleITK: a maintained field library (ITK's registration framework) that installs from PyPI as one
self-contained wheel with no run-time downloads, and registers a 2 mm brain in about a second here; ANTsPy
and ITK-elastix do the same job with larger wheels and slower imports. Only an affine transform is needed:
the lobes are boxes with centimetre boundaries (glioscope_common.brain_atlas), so a deformable
registration would add time without changing a lobe.

Method: the skull-stripped T1-weighted image (T1 when the study has one, else T1c) and the template brain,
both at 2 mm; centres of mass aligned, then a similarity and an affine stage with Mattes mutual
information over a two-level pyramid. Accepted only when the registered brain overlaps the template's
brain by at least MIN_BRAIN_DICE and every scale lies within SCALE_RANGE: a study far from the template
(a partial field of view, a failed brain mask, a child's head) gets no location instead of a wrong one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from glioscope_common.measurements import AtlasRegistration
from glioscope_common.volume import Volume
from glioscope_inference.preprocess import resample

__all__ = ["TEMPLATE_PATH", "register_to_atlas", "MIN_BRAIN_DICE", "SCALE_RANGE", "apply_affine"]

TEMPLATE_PATH = Path(__file__).parent / "atlas_data" / "mni152_2009a_t1_2mm.nii.gz"
TEMPLATE_SPACING_MM = 2.0
MIN_BRAIN_DICE = 0.85
SCALE_RANGE = (0.75, 1.35)
_LPS = np.diag([-1.0, -1.0, 1.0])  # ITK's physical space is LPS; ours is RAS


@lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(TEMPLATE_PATH))
    return np.asarray(image.dataobj, dtype=np.float32), np.asarray(image.affine, dtype=float)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return points @ np.asarray(matrix)[:3, :3].T + np.asarray(matrix)[:3, 3]


def _to_sitk(data: np.ndarray, affine: np.ndarray):  # type: ignore[no-untyped-def]
    import SimpleITK as sitk

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, dtype=np.float32).transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in _LPS @ affine[:3, 3]])
    image.SetDirection([float(v) for v in (_LPS @ affine[:3, :3] / spacing).ravel()])
    return image


def _axis_aligned_grid(brain: Volume, spacing: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An axis-aligned RAS grid at `spacing` mm over the brain mask's bounding box (a 10 mm margin)."""
    ijk = np.argwhere(brain.data > 0)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float)
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    box = lo + corners * (hi - lo)
    world = apply_affine(brain.affine, box)
    start, stop = world.min(axis=0) - 10.0, world.max(axis=0) + 10.0
    shape = tuple(int(np.ceil((stop[i] - start[i]) / spacing)) + 1 for i in range(3))
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3) * spacing
    affine[:3, 3] = start
    return affine, shape  # type: ignore[return-value]


def register_to_atlas(image: Volume, brain: np.ndarray) -> AtlasRegistration:
    """The affine map from `image`'s world (RAS mm) to MNI152 mm. `image`: a T1-weighted volume; `brain`:
    its brain mask on the same grid. Deterministic (fixed sampling seed, one thread)."""
    import SimpleITK as sitk

    template, template_affine = _template()
    grid_affine, grid_shape = _axis_aligned_grid(Volume(brain.astype(np.uint8), image.affine), TEMPLATE_SPACING_MM)
    moving_brain = resample(Volume(brain.astype(np.float32), image.affine), grid_affine, grid_shape, order=1) > 0.5
    moving_data = resample(Volume(np.asarray(image.data, dtype=np.float32), image.affine), grid_affine, grid_shape, order=1)
    moving_data = np.where(moving_brain, moving_data, 0.0).astype(np.float32)
    inside = moving_data[moving_brain]
    if inside.size < 1000:
        return AtlasRegistration(world_to_mni=np.eye(4).tolist(), brain_dice=0.0, scales=(0.0, 0.0, 0.0),
                                 accepted=False, note="too little brain to register to the atlas")
    low, high = np.percentile(inside, [1, 99])
    if high - low > 1e-6:
        moving_data = np.clip((moving_data - low) / (high - low), 0, 1) * moving_brain
    else:  # a constant image: its mask is all there is to register
        moving_data = moving_brain.astype(np.float32)
    fixed = _to_sitk(template / 255.0, template_affine)
    moving = _to_sitk(moving_data, grid_affine)

    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Similarity3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    registration = sitk.ImageRegistrationMethod()
    registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    registration.SetMetricSamplingStrategy(registration.RANDOM)
    registration.SetMetricSamplingPercentage(0.1, seed=17)
    registration.SetInterpolator(sitk.sitkLinear)
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=150, relaxationFactor=0.6
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetShrinkFactorsPerLevel([2, 1])
    registration.SetSmoothingSigmasPerLevel([2.0, 0.0])
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    registration.SetNumberOfThreads(1)
    registration.SetInitialTransform(initial, inPlace=False)
    similarity = registration.Execute(fixed, moving)

    affine = sitk.AffineTransform(3)
    composite = sitk.CompositeTransform(similarity)
    affine.SetCenter(initial.GetCenter())
    affine.SetMatrix(_matrix_of(composite, initial.GetCenter()).ravel().tolist())
    affine.SetTranslation(_translation_of(composite, initial.GetCenter()).tolist())
    registration.SetInitialTransform(affine, inPlace=True)
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=0.5, minStep=1e-4, numberOfIterations=150, relaxationFactor=0.6
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.Execute(fixed, moving)

    # ITK maps fixed (template) points to moving (study) points, in LPS: invert and go to RAS.
    lps_fixed_to_moving = np.eye(4)
    lps_fixed_to_moving[:3, :3] = np.asarray(affine.GetMatrix()).reshape(3, 3)
    center = np.asarray(affine.GetCenter())
    lps_fixed_to_moving[:3, 3] = np.asarray(affine.GetTranslation()) + center - lps_fixed_to_moving[:3, :3] @ center
    flip = np.eye(4)
    flip[:3, :3] = _LPS
    ras_template_to_study = flip @ lps_fixed_to_moving @ flip
    world_to_mni = np.linalg.inv(ras_template_to_study)

    scales = tuple(float(s) for s in np.linalg.svd(world_to_mni[:3, :3], compute_uv=False))
    template_brain = template > 0
    study_brain_in_template = resample(
        Volume(brain.astype(np.float32), image.affine), ras_template_to_study @ template_affine, template.shape, order=1
    ) > 0.5
    overlap = float(2 * np.count_nonzero(template_brain & study_brain_in_template)
                    / max(1, np.count_nonzero(template_brain) + np.count_nonzero(study_brain_in_template)))
    problems = []
    if overlap < MIN_BRAIN_DICE:
        problems.append(f"the registered brain overlaps the atlas brain by only {overlap:.2f} (Dice; needed {MIN_BRAIN_DICE})")
    if not all(SCALE_RANGE[0] <= s <= SCALE_RANGE[1] for s in scales):
        problems.append(f"the registration scales the brain by {min(scales):.2f}-{max(scales):.2f} "
                        f"(plausible {SCALE_RANGE[0]}-{SCALE_RANGE[1]})")
    return AtlasRegistration(
        world_to_mni=world_to_mni.tolist(),
        brain_dice=round(overlap, 3),
        scales=tuple(round(s, 3) for s in scales),  # type: ignore[arg-type]
        accepted=not problems,
        note="; ".join(problems),
    )


def _matrix_of(transform, center) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The linear part of a transform, by differences around its centre (works for any affine-like ITK transform)."""
    c = np.asarray(center, dtype=float)
    origin = np.asarray(transform.TransformPoint(tuple(c)))
    columns = [np.asarray(transform.TransformPoint(tuple(c + e))) - origin for e in np.eye(3)]
    return np.stack(columns, axis=1)


def _translation_of(transform, center) -> np.ndarray:  # type: ignore[no-untyped-def]
    c = np.asarray(center, dtype=float)
    return np.asarray(transform.TransformPoint(tuple(c))) - c
