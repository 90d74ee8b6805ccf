"""Rigid co-registration with SimpleITK on a real case: a FLAIR whose patient moved (rotation and shift
about the head) is put back onto the T1c to well under a voxel; no motion stays no motion; the RAS/LPS
conversion of ITK transforms."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from glioscope_common.dev.testing import require_path
from glioscope_common.volume import Volume
from glioscope_inference.registration import coregister_rigid, itk_to_ras_world

BRATS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "brats18-labelled"
CASE = "Brats18_TCIA02_135_1"


def _motion(deg_x: float, deg_z: float, shift: tuple[float, float, float], centre: np.ndarray) -> np.ndarray:
    ax, az = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ rx
    m[:3, 3] = centre - m[:3, :3] @ centre + np.asarray(shift)
    return m


@pytest.fixture(scope="module")
def case() -> tuple[Volume, Volume]:
    folder = BRATS / CASE
    require_path(folder, "../shared/data/brats18-labelled")
    load = lambda name: nib.load(str(folder / f"{CASE}_{name}.nii.gz"))  # noqa: E731
    t1c, flair = load("t1ce"), load("flair")
    return (Volume(np.asarray(t1c.dataobj, np.float32), t1c.affine), Volume(np.asarray(flair.dataobj, np.float32), flair.affine))


@pytest.mark.parametrize(("deg_x", "deg_z", "shift"), [(6.0, -8.0, (5.0, -4.0, 3.0)), (-10.0, 4.0, (-8.0, 6.0, -2.0)), (0.0, 0.0, (0.0, 0.0, 0.0))])
def test_a_moved_series_is_put_back(case, deg_x, deg_z, shift) -> None:  # type: ignore[no-untyped-def]
    fixed, flair = case
    centre = fixed.affine[:3, :3] @ ((np.array(fixed.shape) - 1) / 2) + fixed.affine[:3, 3]
    motion = _motion(deg_x, deg_z, shift, centre)
    moved = Volume(flair.data, np.linalg.inv(motion) @ flair.affine)  # the anatomy moved by `motion`
    transform = coregister_rigid(moved, fixed)
    residual = transform @ np.linalg.inv(motion)  # identity when the motion is undone
    brain = np.argwhere(fixed.data > 0)[::500] @ fixed.affine[:3, :3].T + fixed.affine[:3, 3]
    error = np.linalg.norm(brain @ residual[:3, :3].T + residual[:3, 3] - brain, axis=1)
    assert error.mean() < 0.6 and error.max() < 1.2, (error.mean(), error.max())


def test_an_implausible_motion_keeps_the_scanner_geometry(case) -> None:  # type: ignore[no-untyped-def]
    fixed, flair = case
    far = np.eye(4)
    far[:3, 3] = (80.0, 0.0, 0.0)  # 8 cm: another body part, not a patient who moved
    assert np.array_equal(coregister_rigid(Volume(flair.data, far @ flair.affine), fixed), np.eye(4))


def test_itk_transforms_become_ras_world_transforms() -> None:
    import SimpleITK as sitk

    itk = sitk.Euler3DTransform()
    itk.SetTranslation((2.0, 3.0, 4.0))  # fixed point x (LPS) -> moving point x + t
    world = itk_to_ras_world(itk)
    # the moving image is moved back by -t, in RAS: (+2, +3, -4) -> L/P flipped
    assert np.allclose(world, np.array([[1, 0, 0, 2.0], [0, 1, 0, 3.0], [0, 0, 1, -4.0], [0, 0, 0, 1]]))
