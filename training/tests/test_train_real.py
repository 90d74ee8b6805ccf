"""The real-case fine-tuning recipe's parts: packing, folds, augmentation, sequence dropout, and one tiny run."""

import json

import numpy as np
import pytest

from glioscope_common.dev.testing import require_module

torch = require_module("torch", "pip install -e 'training[train]'")
nib = require_module("nibabel", "pip install nibabel")

from glioscope_training import real_cases, template_pack  # noqa: E402
from glioscope_training.train_real import SEQUENCES, SUBSETS, RealCasePool, drop_sequences, main  # noqa: E402


def _write_case(folder, name, rng, shape=(36, 40, 32)):
    case = folder / name
    case.mkdir(parents=True)
    brain = np.zeros(shape, bool)
    brain[6:30, 6:34, 5:27] = True
    label = np.zeros(shape, np.int16)
    label[14:22, 14:24, 10:18] = 2
    label[16:20, 16:22, 12:16] = 1
    label[18:20, 18:20, 13:15] = 4  # BraTS enhancing
    for suffix in real_cases.BRATS18_SUFFIXES:
        img = np.where(brain, rng.normal(500, 80, shape) + 300 * (label > 0), 0).astype(np.int16)
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(case / f"{name}_{suffix}.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(case / f"{name}_seg.nii.gz"))
    return brain, label


def test_quantised_z_scores_stay_within_half_a_step_and_keep_the_background_at_zero():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (4, 20, 20, 20)).astype(np.float32)
    brain = np.ones((20, 20, 20), bool)
    brain[:3] = False
    back = real_cases.dequantise(real_cases.quantise(z, brain))
    step = 2 * real_cases.Z_CLIP / (real_cases.LEVELS - 1)
    inside = np.clip(z, -real_cases.Z_CLIP, real_cases.Z_CLIP)[:, brain]
    assert np.abs(back[:, brain] - inside).max() <= step / 2 + 1e-5
    assert float(np.abs(back[:, ~brain]).max()) == 0.0


def test_pack_crops_to_the_brain_maps_brats_labels_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    shapes = {}
    for name in ("Case_A", "Case_B", "Case_C"):
        brain, label = _write_case(tmp_path / "src", name, rng)
        shapes[name] = brain
    out = tmp_path / "real.npz.xz"
    assert real_cases.pack(tmp_path / "src", out) == ["Case_A", "Case_B", "Case_C"]
    cases = real_cases.load_packed(out)
    image, label = cases["Case_A"]
    assert image.shape == (4, 24 + 4, 28 + 4, 22 + 4)  # the brain's box plus a 2-voxel margin
    assert label.shape == image.shape[1:] and set(np.unique(label)) == {0, 1, 2, 3}
    assert abs(float(image[:, label == 0][:, image[0][label == 0] != 0].mean())) < 1.0  # z-scored
    assert folds_cover(real_cases.folds(list(cases), 2), list(cases))


def folds_cover(folds, names):
    flat = [n for f in folds for n in f]
    return sorted(flat) == sorted(names) and len(flat) == len(set(flat)) and all(folds)


def test_folds_are_disjoint_and_cover_every_case():
    names = [f"c{i}" for i in range(10)]
    assert folds_cover(real_cases.folds(names, 5), names)
    assert [len(f) for f in real_cases.folds(names, 3)] == [4, 3, 3]


def test_real_pool_samples_rotated_patches_with_valid_labels():
    rng = np.random.default_rng(2)
    image = np.zeros((4, 48, 48, 48), np.float32)
    image[:, 8:40, 8:40, 8:40] = rng.normal(0, 1, (4, 32, 32, 32))
    label = np.zeros((48, 48, 48), np.uint8)
    label[20:30, 20:30, 20:30] = 2
    label[23:27, 23:27, 23:27] = 3
    pool = RealCasePool({"a": (image, label)}, torch.device("cpu"), rng, tumour_fraction=1.0)
    x, y = pool.sample(["a"], 3, 32)
    assert x.shape == (3, 4, 32, 32, 32) and y.shape == (3, 32, 32, 32) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= {0, 2, 3}
    assert all(int((y[b] > 0).sum()) > 0 for b in range(3))  # patches centred near the tumour
    assert float(x[:, 0][y == 0].abs().sum()) > 0 and float(x[:, 0][y > 0].mean()) != 0


def test_sequence_dropout_keeps_only_a_listed_subset():
    rng = np.random.default_rng(3)
    x = torch.ones(64, 4, 2, 2, 2)
    dropped = drop_sequences(x, rng, probability=1.0)
    allowed = {tuple(float(s in keep) for s in SEQUENCES) for keep, _ in SUBSETS.values()}
    kept = {tuple(float(v) for v in dropped[b, :, 0, 0, 0]) for b in range(64)}
    assert kept <= allowed and len(kept) >= 4
    assert torch.equal(drop_sequences(x, rng, probability=0.0), x)


def test_template_pack_round_trip(tmp_path, monkeypatch):
    from glioscope_training import synth

    original = synth._template()
    packed = tmp_path / "lean.npz"
    template_pack.pack(packed)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = template_pack.install(packed)
    assert path.is_file() and str(path).startswith(str(tmp_path))
    try:
        restored = synth._template()
        np.testing.assert_allclose(restored.gm, original.gm, atol=0.5 / 255 + 1e-3)
        np.testing.assert_allclose(restored.depth, original.depth, atol=0.125 + 0.05)
        np.testing.assert_array_equal(restored.wm_points, original.wm_points)
    finally:
        synth._template.cache_clear()


@pytest.mark.slow
def test_a_tiny_cross_validated_run_trains_saves_and_scores_every_fold(tmp_path):
    rng = np.random.default_rng(4)
    for name in ("Case_A", "Case_B", "Case_C", "Case_D"):
        _write_case(tmp_path / "src", name, rng, shape=(40, 44, 36))
    real_cases.pack(tmp_path / "src", tmp_path / "real.npz.xz")
    out = tmp_path / "run"
    main(["--out", str(out), "--real", str(tmp_path / "real.npz.xz"), "--folds", "2", "--minutes", "0.05",
          "--workers", "1", "--crop", "32", "--batch", "2", "--real-per-batch", "1", "--min-cases", "1",
          "--widths", "4,8,8,8", "--eval-seeds", "", "--patch", "32", "--device", "cpu"])
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["folds"]) == ["all", "fold0", "fold1"]
    assert results["folds"]["fold0"]["test"] == ["Case_A", "Case_C"]
    assert set(results["folds"]["fold0"]["train"]) == {"Case_B", "Case_D"}
    assert sorted(row["case"] for row in results["cv"]) == ["Case_A", "Case_B", "Case_C", "Case_D"]
    assert all(set(row) >= {"all", *SUBSETS} for row in results["cv"])
    assert results["steps"] >= 1 and len(results["baseline_real"]) == 4
    for name in ("fold0", "fold1", "all"):
        ck = torch.load(out / f"{name}.pt", weights_only=False)
        assert ck["model_kwargs"] == {"widths": (4, 8, 8, 8)} and ck["step"] == results["steps"]
