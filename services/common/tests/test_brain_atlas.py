"""The lobe lookup and the hemisphere rule in MNI152 space (glioscope_common.brain_atlas)."""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.brain_atlas import LOBES, lobe_index, locate_in_atlas


@pytest.mark.parametrize(
    ("point", "lobe"),
    [
        ((-30.0, 30.0, 30.0), "frontal lobe"),
        ((40.0, -50.0, 40.0), "parietal lobe"),
        ((-50.0, -20.0, -15.0), "temporal lobe"),
        ((20.0, -85.0, 10.0), "occipital lobe"),
        ((-20.0, -60.0, -35.0), "posterior fossa (cerebellum/brainstem)"),
        ((-15.0, -10.0, 5.0), "deep grey matter (basal ganglia/thalamus)"),
        ((36.0, 0.0, 5.0), "insula"),
        ((2.0, 40.0, 20.0), "frontal lobe"),
    ],
)
def test_lobe_lookup(point, lobe) -> None:  # type: ignore[no-untyped-def]
    assert LOBES[int(lobe_index(np.array([point]))[0])] == lobe


def _ball(centre: tuple[float, float, float], radius: float = 8.0) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(-radius, radius + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return grid[np.linalg.norm(grid, axis=1) <= radius] + np.array(centre)


def test_one_computation_for_side_and_lobe() -> None:
    right_frontal = locate_in_atlas(_ball((30.0, 40.0, 20.0)))
    assert right_frontal.hemisphere == "right" and [lobe.name for lobe in right_frontal.lobes] == ["frontal lobe"]
    left_temporal = locate_in_atlas(_ball((-50.0, -20.0, -15.0)))
    assert left_temporal.hemisphere == "left" and left_temporal.lobes[0].name == "temporal lobe"


def test_midline_and_bilateral() -> None:
    brainstem = locate_in_atlas(_ball((0.0, -30.0, -35.0)))
    assert brainstem.hemisphere == "midline" and brainstem.lobes[0].name == "posterior fossa (cerebellum/brainstem)"
    crossing = locate_in_atlas(np.concatenate([_ball((12.0, 30.0, 30.0)), _ball((-8.0, 30.0, 30.0), 5.0)]))
    assert crossing.hemisphere == "bilateral" and crossing.left_fraction >= 0.1


def test_lobes_share_a_tumour_largest_first() -> None:
    points = np.concatenate([_ball((40.0, -10.0, 40.0)), _ball((40.0, -40.0, 40.0), 6.0)])  # frontal + parietal
    location = locate_in_atlas(points)
    assert [lobe.name for lobe in location.lobes] == ["frontal lobe", "parietal lobe"]
    assert sum(lobe.fraction for lobe in location.lobes) == pytest.approx(1.0, abs=0.01)


def test_no_points_is_an_error() -> None:
    with pytest.raises(ValueError):
        locate_in_atlas(np.zeros((0, 3)))
