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
from glioscope_inference.registration import itk_matrix, itk_to_ras_world, mattes_registration, to_sitk

__all__ = ["TEMPLATE_PATH", "register_to_atlas", "MIN_BRAIN_DICE", "SCALE_RANGE", "apply_affine"]

TEMPLATE_PATH = Path(__file__).parent / "atlas_data" / "mni152_2009a_t1_2mm.nii.gz"
TEMPLATE_SPACING_MM = 2.0
MIN_BRAIN_DICE = 0.85
SCALE_RANGE = (0.75, 1.35)


@lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(TEMPLATE_PATH))
    return np.asarray(image.dataobj, dtype=np.float32), np.asarray(image.affine, dtype=float)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return points @ np.asarray(matrix)[:3, :3].T + np.asarray(matrix)[:3, 3]


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
    fixed = to_sitk(template / 255.0, template_affine)
    moving = to_sitk(moving_data, grid_affine)

    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Similarity3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    registration = mattes_registration(sampling=0.1, seed=17, shrink=[2, 1], smoothing_mm=[2.0, 0.0])
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=150, relaxationFactor=0.6
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetInitialTransform(initial, inPlace=False)
    similarity = registration.Execute(fixed, moving)

    affine = sitk.AffineTransform(3)  # the similarity result, refined with shears and per-axis scales
    similarity_matrix = itk_matrix(similarity)  # x -> M x + o; with a centre c: M (x - c) + c + (o - c + M c)
    centre = np.asarray(initial.GetCenter())
    affine.SetCenter(centre.tolist())
    affine.SetMatrix(similarity_matrix[:3, :3].ravel().tolist())
    affine.SetTranslation((similarity_matrix[:3, 3] - centre + similarity_matrix[:3, :3] @ centre).tolist())
    registration.SetInitialTransform(affine, inPlace=True)
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=0.5, minStep=1e-4, numberOfIterations=150, relaxationFactor=0.6
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.Execute(fixed, moving)

    world_to_mni = itk_to_ras_world(affine)  # the study (moving) onto the template (fixed)
    ras_template_to_study = np.linalg.inv(world_to_mni)
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
