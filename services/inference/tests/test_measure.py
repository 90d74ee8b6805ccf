"""Measurements from first principles.

RAS+: world x grows towards the patient's RIGHT (R is the positive end), y anterior, z superior.
So a lesion at x = +30 mm (with the midline at x = 0) is in the patient's right hemisphere.
The hemisphere comes from the atlas registration only (MNI152: the midline is x = 0); these tests give an
identity registration (the grid is already in MNI space) or a known shift.
"""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.measurements import AtlasRegistration
from glioscope_inference.measure import measure, measure_delivered
from glioscope_inference.postprocess import clean_labels, probabilities_to_labels


def registered(shift_x_mm: float = 0.0, accepted: bool = True) -> AtlasRegistration:
    """A registration that maps the world to MNI space by a shift along x (0: the identity)."""
    matrix = np.eye(4)
    matrix[0, 3] = shift_x_mm
    return AtlasRegistration(world_to_mni=matrix.tolist(), brain_dice=0.95 if accepted else 0.5,
                             scales=(1.0, 1.0, 1.0), accepted=accepted, note="" if accepted else "too little overlap")


IDENTITY = registered()


def grid(shape, spacing=(1.0, 1.0, 1.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0 * np.array(spacing)  # world origin at the centre
    world = np.indices(shape).reshape(3, -1).T * np.array(spacing) + affine[:3, 3]
    return affine, world.reshape(*shape, 3)


def test_sphere_volume_and_diameter(tiny_metadata):
    affine, world = grid((60, 60, 60), (1.0, 1.0, 1.0))
    radius = 15.0
    labels = np.zeros((60, 60, 60), np.uint8)
    labels[np.linalg.norm(world, axis=-1) <= radius] = 2
    labels[np.linalg.norm(world, axis=-1) <= 6.0] = 3
    m = measure(labels, affine, tiny_metadata, registration=IDENTITY)
    true_ml = 4 / 3 * np.pi * radius**3 / 1000
    assert m.region_volumes_ml["WT"] == pytest.approx(true_ml, rel=0.03)
    assert m.region_volumes_ml["ET"] == pytest.approx(4 / 3 * np.pi * 6**3 / 1000, rel=0.1)
    assert m.region_volumes_ml["TC"] == m.region_volumes_ml["ET"]
    assert {v.label: v.volume_ml for v in m.label_volumes}[1] == 0
    assert abs(m.max_axial_diameter_mm - 2 * radius) <= 1.0
    assert abs(m.perpendicular_diameter_mm - 2 * radius) <= 1.5
    assert m.bidimensional_product_mm2 == pytest.approx(m.max_axial_diameter_mm * m.perpendicular_diameter_mm, rel=1e-3)
    assert np.allclose(m.centroid_ras_mm, (0, 0, 0), atol=0.1)
    assert m.tumour_detected and m.hemisphere == "midline"  # both sides, centred on x = 0
    assert m.axial_slice_index in range(28, 33)


def test_anisotropic_voxels_volume(tiny_metadata):
    affine, world = grid((50, 50, 20), (1.0, 1.0, 3.0))
    labels = (np.linalg.norm(world, axis=-1) <= 20.0).astype(np.uint8) * 2
    m = measure(labels, affine, tiny_metadata)
    assert m.region_volumes_ml["WT"] == pytest.approx(4 / 3 * np.pi * 20**3 / 1000, rel=0.03)
    assert abs(m.max_axial_diameter_mm - 40.0) <= 1.0


def test_ellipse_axes_in_plane(tiny_metadata):
    """An elliptic cylinder rotated 30 degrees in the axial plane: semi-axes 20 and 8 mm."""
    affine, world = grid((70, 70, 10), (1.0, 1.0, 2.0))
    a = np.deg2rad(30)
    u = world[..., 0] * np.cos(a) + world[..., 1] * np.sin(a)
    v = -world[..., 0] * np.sin(a) + world[..., 1] * np.cos(a)
    labels = ((u / 20.0) ** 2 + (v / 8.0) ** 2 <= 1.0).astype(np.uint8) * 2
    m = measure(labels, affine, tiny_metadata)
    assert abs(m.max_axial_diameter_mm - 40.0) <= 1.0
    assert abs(m.perpendicular_diameter_mm - 16.0) <= 1.5


@pytest.mark.parametrize("x_centre, expected", [(30.0, "right"), (-30.0, "left")])
def test_hemisphere_from_ras_sign(tiny_metadata, x_centre, expected):
    affine, world = grid((100, 60, 40))
    labels = (np.linalg.norm(world - np.array([x_centre, 0, 0]), axis=-1) <= 8).astype(np.uint8) * 2
    m = measure(labels, affine, tiny_metadata, registration=IDENTITY)
    assert m.hemisphere == expected == m.location.hemisphere
    assert m.centroid_ras_mm[0] == pytest.approx(x_centre, abs=0.2)


def test_hemisphere_with_lps_like_affine_and_registration(tiny_metadata):
    """Voxel axis i runs towards patient LEFT (affine x column negative): voxel i large -> x small -> left."""
    shape = (80, 40, 30)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = 40.0  # x = 40 - i: i = 0 is 40 mm right, i = 79 is 39 mm left
    labels = np.zeros(shape, np.uint8)
    labels[60:70, 15:25, 10:20] = 2  # x in (-29, -20): left of x = 0
    assert measure(labels, affine, tiny_metadata, registration=IDENTITY).hemisphere == "left"
    # a registration that moves the world 35 mm to the right (the head lay off-centre) puts it on the right
    assert measure(labels, affine, tiny_metadata, registration=registered(35.0)).hemisphere == "right"


def test_no_location_without_an_accepted_registration(tiny_metadata):
    """No side is guessed from scanner coordinates: without an accepted registration the location is
    not available, and the measurements say why."""
    affine, world = grid((100, 60, 40))
    labels = (np.linalg.norm(world - np.array([30.0, 0, 0]), axis=-1) <= 8).astype(np.uint8) * 2
    m = measure(labels, affine, tiny_metadata)
    assert (m.hemisphere, m.location) == ("undetermined", None) and "not registered" in m.location_note
    m = measure(labels, affine, tiny_metadata, registration=registered(accepted=False))
    assert (m.hemisphere, m.location) == ("undetermined", None) and "too little overlap" in m.location_note


def test_hemisphere_and_lobes_from_one_computation(tiny_metadata):
    """A right frontal lesion (MNI x +30, y +40, z +20) is right and frontal; moved to y -85 it is occipital."""
    affine, world = grid((160, 200, 140))
    for centre, lobe in (((30.0, 40.0, 20.0), "frontal lobe"), ((30.0, -85.0, 10.0), "occipital lobe")):
        labels = (np.linalg.norm(world - np.array(centre), axis=-1) <= 8).astype(np.uint8) * 2
        m = measure(labels, affine, tiny_metadata, registration=IDENTITY)
        assert m.location is not None and m.hemisphere == "right"
        assert m.location.lobes[0].name == lobe and m.location.lobes[0].fraction == 1.0
        assert m.location.right_fraction == 1.0 and m.location.left_fraction == 0.0


def test_oblique_grid_measured_on_ras_grid(tiny_metadata):
    shape = (50, 50, 40)
    a = np.deg2rad(25)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    world = np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    labels = (np.linalg.norm(world, axis=-1) <= 12.0).reshape(shape).astype(np.uint8) * 3
    m = measure(labels, affine, tiny_metadata)
    assert abs(m.max_axial_diameter_mm - 24.0) <= 1.5
    assert m.region_volumes_ml["ET"] == pytest.approx(4 / 3 * np.pi * 12**3 / 1000, rel=0.03)


def test_empty_label_map(tiny_metadata):
    m = measure(np.zeros((10, 10, 10), np.uint8), np.eye(4), tiny_metadata)
    assert not m.tumour_detected and m.hemisphere == "none" and m.max_axial_diameter_mm == 0


def test_clean_labels_keeps_largest_and_big_components(tiny_metadata):
    labels = np.zeros((60, 30, 30), np.uint8)
    labels[5:25, 5:25, 5:25] = 2  # 8 mL
    labels[10:15, 10:15, 10:15] = 3
    labels[40:52, 5:17, 5:17] = 2  # 1.7 mL: a second focus, kept
    labels[55:58, 25:28, 25:28] = 3  # 27 uL speck: removed
    out = clean_labels(labels, 1.0)
    assert out[45, 10, 10] == 2 and out[12, 12, 12] == 3
    assert out[56, 26, 26] == 0
    assert out.dtype == np.uint8


def test_probabilities_to_labels_uses_metadata_values(tiny_metadata):
    p = np.zeros((4, 2, 1, 1), np.float32)
    p[3, 0] = 1
    p[0, 1] = 1
    assert probabilities_to_labels(p, tiny_metadata)[:, 0, 0].tolist() == [3, 0]


def test_edited_masks_keep_the_model_runs_warnings_and_registration(tiny_metadata):
    """Measurements recomputed after a mask edit carry the model run's input warnings and are located
    with its registration (the same source images)."""
    from glioscope_common.volume import Volume
    from glioscope_inference.editing.service import model_run_context

    labels = np.zeros((40, 40, 40), np.uint8)
    labels[25:35, 15:25, 15:25] = 2
    reference = Volume(np.full((40, 40, 40), 5.0, np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    prior = measure_delivered(labels, reference, tiny_metadata, registration=registered(-100.0),
                              input_warnings=["The images were not skull-stripped."])
    registration, warnings, plan = model_run_context(prior.model_dump(mode="json"))
    edited = measure_delivered(labels[::-1].copy(), reference, tiny_metadata, registration=registration,
                               input_warnings=warnings)
    assert edited.input_warnings == ["The images were not skull-stripped."]
    assert edited.atlas_registration == prior.atlas_registration
    assert (prior.hemisphere, edited.hemisphere) == ("right", "left")  # x 100-136 -> 0-36; x 20-56 -> -80..-44
    assert plan.complete and model_run_context(None)[:2] == (None, [])


def test_an_edit_of_a_study_without_t1c_keeps_its_regions(tiny_metadata):
    """The model run used T2 and FLAIR only: an edited mask is measured with the same plan, its brush labels
    merged into the one whole-tumour label, and no core or enhancing volume."""
    from glioscope_common.measurements import WHOLE_TUMOUR_LABEL
    from glioscope_common.sequence_regions import delivered_labels, plan_sequences, restrict_labels
    from glioscope_common.volume import Volume
    from glioscope_inference.editing.service import model_run_context

    reference = Volume(np.full((20, 20, 20), 5.0, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    run_plan = plan_sequences(["T2", "FLAIR"])
    delivered = tiny_metadata.model_copy(update={"labels": delivered_labels(tiny_metadata.labels, run_plan)})
    run_labels = np.zeros((20, 20, 20), np.uint8)
    run_labels[5:10, 5:10, 5:10] = WHOLE_TUMOUR_LABEL
    prior = measure_delivered(run_labels, reference, delivered, registration=None, input_warnings=[], plan=run_plan)
    _, _, plan = model_run_context(prior.model_dump(mode="json"))
    brushed = run_labels.copy()
    brushed[10:12, 5:10, 5:10] = 3  # the brush painted "enhancing" next to it
    edited = measure_delivered(restrict_labels(brushed, plan), reference, delivered, registration=None,
                               input_warnings=[], plan=plan)
    assert list(edited.region_volumes_ml) == ["WT"] and edited.regions_not_reported.keys() == {"TC", "ET"}
    assert edited.region_volumes_ml["WT"] == pytest.approx(175 * 8 / 1000)
    assert [v.label for v in edited.label_volumes] == [WHOLE_TUMOUR_LABEL]


def test_max_distance_is_exact_on_a_hull_with_thousands_of_vertices():
    """6000 points on a circle (every one a hull vertex) and two opposite points just outside it: the diameter
    is theirs, 102 mm. Catches a thinned hull (the earlier code kept every 2nd vertex above 4000 and answered
    100.5 mm)."""
    from glioscope_inference.measure import _max_distance

    angles = np.linspace(0, 2 * np.pi, 6000, endpoint=False)
    circle = 50 * np.c_[np.cos(angles), np.sin(angles)]
    spike = 51 * np.array([np.cos(0.3007), np.sin(0.3007)])
    diameter, a, b = _max_distance(np.r_[circle, [spike, -spike]])
    assert diameter == pytest.approx(102.0, abs=1e-9)
    assert {tuple(np.round(a, 6)), tuple(np.round(b, 6))} == {tuple(np.round(spike, 6)), tuple(np.round(-spike, 6))}


@pytest.mark.parametrize("seed", range(5))
def test_max_distance_equals_all_pairs(seed):
    from glioscope_inference.measure import _max_distance

    rng = np.random.default_rng(seed)
    points = rng.integers(0, 40, size=(300, 2)).astype(float) * [0.9, 1.1]
    line = np.c_[np.arange(50.0), np.full(50, 3.0)]  # collinear: no hull, all pairs
    for pts in (points, line, points[:2], points[:1]):
        brute = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).max()
        diameter, a, b = _max_distance(pts)
        assert diameter == pytest.approx(brute) and np.linalg.norm(a - b) == pytest.approx(brute)
