import numpy as np
import pytest

from glioscope_training.synth import SEQUENCES, SyntheticCase, generate_case, synthesize


def test_small_crop_deterministic_by_seed():
    a = synthesize(3, (48, 48, 48), around_tumour=True, require_all_labels=False)
    b = synthesize(3, (48, 48, 48), around_tumour=True, require_all_labels=False)
    c = synthesize(4, (48, 48, 48), around_tumour=True, require_all_labels=False)
    for s in SEQUENCES:
        np.testing.assert_array_equal(a.images[s], b.images[s])
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.images["FLAIR"], c.images["FLAIR"])


@pytest.fixture(scope="module")
def full_case() -> SyntheticCase:
    return generate_case(11)


def test_full_case_shapes_affine_labels(full_case):
    case = full_case
    assert set(case.images) == set(SEQUENCES)
    for img in case.images.values():
        assert img.shape == (240, 240, 155)
        assert img.dtype == np.float32
        assert img.min() >= 0
        assert 300 < img.max() < 10000  # MRI-like scale, fits uint16
    assert case.label.shape == (240, 240, 155) and case.label.dtype == np.uint8
    assert set(np.unique(case.label)) == {0, 1, 2, 3}
    np.testing.assert_allclose(np.abs(np.diag(case.affine)[:3]), 1.0)
    assert np.allclose(case.affine[:3, :3], np.diag(np.diag(case.affine[:3, :3])))  # RAS, axis-aligned
    # brain centred in the grid, tumour inside the brain
    brain = case.images["T1"] > 0
    centre = np.argwhere(brain).mean(0)
    assert np.all(np.abs(centre - (np.array(brain.shape) - 1) / 2) < 15)
    assert np.all(brain[case.label > 0]), f"{int((~brain[case.label > 0]).sum())} tumour voxels outside the brain"
    assert (case.label > 0).sum() > 500


def test_tumour_brighter_on_flair(full_case):
    case = full_case
    flair = case.images["FLAIR"]
    brain = flair > 0
    oedema = case.label == 2
    assert flair[oedema].mean() > 1.3 * flair[brain & (case.label == 0)].mean()


def test_cached_cases_carry_the_generator_version_and_stale_ones_are_made_again(tmp_path):
    from glioscope_training import cache
    from glioscope_training.synth import GENERATOR_VERSION

    cache.write(5, tmp_path, 32)
    path = tmp_path / "case_5.npz"
    image, label = cache.read_case(path)
    assert image.shape == (4, 32, 32, 32) and label.shape == (32, 32, 32)
    np.savez(path, image=image, label=label)  # as an older generator wrote it (no version)
    with pytest.raises(cache.StaleCase, match=f"version 1, this is {GENERATOR_VERSION}"):
        cache.read_case(path)
    cache.write(5, tmp_path, 32)  # not skipped: made again
    again, _ = cache.read_case(path)
    np.testing.assert_array_equal(again, image)
