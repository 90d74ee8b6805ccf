"""The GPU recipe's parts, on the CPU: its pipeline copy must equal the evaluation's."""

import time

import numpy as np

from glioscope_common.dev.testing import require_module

torch = require_module("torch", "pip install -e 'training[train]'")

from glioscope_training.infer import largest_components, segment, zscore  # noqa: E402
from glioscope_training.model import build_model  # noqa: E402
from glioscope_training.train_gpu import CaseFactory, GpuCasePool, segment_gpu, zscore_gpu  # noqa: E402


def _brain_image(rng: np.random.Generator, shape=(40, 36, 30)) -> np.ndarray:
    img = rng.uniform(100, 900, (4,) + shape).astype(np.float32)
    img[:, :5] = 0  # background the z-score must leave at zero
    img[2, 10:20, 10:20, 10:20] = 0  # one channel empty inside the brain: still brain
    return img


def test_zscore_gpu_matches_numpy():
    img = _brain_image(np.random.default_rng(0))
    np.testing.assert_allclose(zscore_gpu(torch.from_numpy(img)).numpy(), zscore(img), atol=1e-4)


def test_segment_gpu_matches_evaluation_pipeline():
    torch.manual_seed(0)
    model = build_model(widths=(4, 8, 8, 8)).eval()
    img = _brain_image(np.random.default_rng(1), (40, 36, 30))

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    narrow = _brain_image(np.random.default_rng(3), (28, 36, 30))  # narrower than the patch along x
    for image in (img, narrow):
        for flip in (False, True):
            ref, _ = segment(predict, image, (32, 32, 32), flip_tta=flip, postprocess=False)
            got = segment_gpu(model, image, patch=32, flip=flip)
            ref = largest_components(ref)
            assert got.shape == ref.shape and got.dtype == np.uint8
            assert (got == ref).mean() > 0.999


def test_training_seeds_stay_clear_of_the_held_out_seeds():
    from argparse import Namespace

    from glioscope_training.train_gpu import val_seeds_ok

    assert val_seeds_ok(Namespace(val_seeds="200000:200012", eval_seeds="100000:100012", first_seed=0))
    assert not val_seeds_ok(Namespace(val_seeds="200000:200012", eval_seeds="100000:100012", first_seed=50_000))
    assert not val_seeds_ok(Namespace(val_seeds="", eval_seeds="100000:100012", first_seed=0))


def test_pool_samples_augmented_patches_near_the_tumour():
    rng = np.random.default_rng(2)
    pool = GpuCasePool(max_cases=2, device=torch.device("cpu"), rng=rng, tumour_fraction=1.0)
    for _ in range(3):
        img = _brain_image(rng, (48, 48, 48))
        lab = np.zeros((48, 48, 48), np.uint8)
        lab[30:40, 30:40, 30:40] = 2
        pool.add(img, lab)
    assert len(pool.cases) == 2 and pool.added == 3  # the oldest case left the device
    x, y = pool.sample(batch=4, crop=32, channel_dropout=1.0)
    assert x.shape == (4, 4, 32, 32, 32) and y.shape == (4, 32, 32, 32)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert all(int((y[b] > 0).sum()) > 0 for b in range(4))  # every patch holds tumour
    assert all(int((x[b].abs().sum(dim=(1, 2, 3)) == 0).sum()) >= 1 for b in range(4))  # one channel dropped
    small, _ = pool.sample(batch=1, crop=64, channel_dropout=0.0)  # larger than the case: zero-padded
    assert small.shape == (1, 4, 64, 64, 64) and float(small[0, :, :, 50:].abs().sum()) == 0  # (flips are along x)


def _cheap_case(job):
    kind, seed = job
    if seed == 3:
        raise ValueError("a bad seed")
    return kind, seed, np.full((4, 2, 2, 2), seed, np.float16), np.zeros((2, 2, 2), np.uint8)


def test_case_factory_serves_held_out_requests_first_and_survives_a_bad_seed():
    factory = CaseFactory(workers=1, first_train_seed=0, make=_cheap_case)
    try:
        factory.request("val", [200000, 200001])
        got: list[tuple[str, int]] = []
        deadline = time.time() + 30
        while len(got) < 6 and time.time() < deadline:
            got += [(kind, seed) for kind, seed, _, _ in factory.poll()]
            time.sleep(0.05)
    finally:
        factory.close()
    assert got[:2] == [("val", 200000), ("val", 200001)]
    train = [seed for kind, seed in got if kind == "train"]
    assert 3 not in train and train[:3] == [0, 1, 2]


def test_average_weights_is_the_mean_of_the_checkpoints(tmp_path):
    from glioscope_training.export import average_weights

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(widths=(4, 8, 8, 8))
        path = tmp_path / f"ck{seed}.pt"
        torch.save({"model": model.state_dict(), "ema": model.state_dict(), "step": seed,
                    "model_kwargs": {"widths": (4, 8, 8, 8)}}, path)
        paths.append(path)
    a, b = (torch.load(p, weights_only=False)["ema"] for p in paths)
    soup, info = average_weights(paths)
    for k, v in soup.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k] + b[k]) / 2)
    assert info["step"] == [0, 1]
