"""Registration to the MNI152 atlas (SimpleITK) on real brains, and the location it gives.

Real expert-labelled BraTS 2018 cases (../shared/data/brats18-labelled): the registration is accepted,
and the location is a property of the anatomy, not of the file: the same brain mirrored left-right moves
the tumour to the other hemisphere and keeps its lobe; a brain shifted and rotated in the scanner's space
keeps both. A study far from the template (a brain cut in half, a phantom) gets no location."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from glioscope_common.dev.testing import require_path
from glioscope_common.brain_atlas import locate_in_atlas
from glioscope_common.volume import Volume
from glioscope_inference.atlas import apply_affine, register_to_atlas

BRATS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "brats18-labelled"
CASE = "Brats18_CBICA_ALU_1"  # a left temporal tumour (checked by eye on the T1c)


def _case() -> tuple[Volume, np.ndarray]:
    folder = BRATS / CASE
    require_path(folder, "../shared/data/brats18-labelled")
    t1 = nib.load(str(folder / f"{CASE}_t1.nii.gz"))
    labels = np.asarray(nib.load(str(folder / f"{CASE}_seg.nii.gz")).dataobj)
    return Volume(np.asarray(t1.dataobj, dtype=np.float32), np.asarray(t1.affine, dtype=float)), labels


def _locate(image: Volume, labels: np.ndarray):  # type: ignore[no-untyped-def]
    registration = register_to_atlas(image, image.data > 0)
    assert registration.accepted, registration.note
    assert registration.brain_dice >= 0.9
    world = apply_affine(image.affine, np.argwhere(labels > 0))
    return locate_in_atlas(apply_affine(np.asarray(registration.world_to_mni), world))


@pytest.fixture(scope="module")
def case() -> tuple[Volume, np.ndarray]:
    return _case()


def test_real_case_is_located(case) -> None:  # type: ignore[no-untyped-def]
    image, labels = case
    location = _locate(image, labels)
    assert location.hemisphere == "left" and location.lobes[0].name == "temporal lobe"


def test_mirrored_brain_moves_the_tumour_to_the_other_side(case) -> None:  # type: ignore[no-untyped-def]
    image, labels = case
    mirrored = Volume(np.ascontiguousarray(image.data[::-1]), image.affine)
    location = _locate(mirrored, np.ascontiguousarray(labels[::-1]))
    assert location.hemisphere == "right" and location.lobes[0].name == "temporal lobe"


def test_location_does_not_depend_on_the_scanner_frame(case) -> None:  # type: ignore[no-untyped-def]
    """The same voxels under another affine (rotated 15 degrees about S and shifted 60 mm): same location."""
    image, labels = case
    angle = np.deg2rad(15)
    motion = np.eye(4)
    motion[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    motion[:3, 3] = (60.0, -40.0, 25.0)
    moved = _locate(Volume(image.data, motion @ image.affine), labels)
    plain = _locate(image, labels)
    assert (moved.hemisphere, moved.lobes[0].name) == (plain.hemisphere, plain.lobes[0].name)
    assert np.linalg.norm(np.subtract(moved.centroid_mni_mm, plain.centroid_mni_mm)) < 5.0


def test_far_from_the_template_is_rejected(case) -> None:  # type: ignore[no-untyped-def]
    image, _ = case
    half = image.data.copy()
    half[:, :, : half.shape[2] // 2 + 10] = 0  # the upper part of the head only
    registration = register_to_atlas(Volume(half, image.affine), half > 0)
    assert not registration.accepted and ("overlaps" in registration.note or "scales" in registration.note)
    ball = np.zeros((64, 64, 64), np.float32)
    grid = np.indices(ball.shape) - 31.5
    ball[np.linalg.norm(grid, axis=0) < 20] = 100.0  # a 4 cm phantom
    registration = register_to_atlas(Volume(ball, np.diag([1.0, 1.0, 1.0, 1.0])), ball > 0)
    assert not registration.accepted
