"""Training smoke test on tiny volumes: train a few steps, resume, export to ONNX, run ORT."""

import numpy as np

from glioscope_common.dev.testing import require_module

require_module("torch", "pip install -e 'training[train]'; CI installs it")


def test_train_resume_export(tmp_path):
    import torch

    from glioscope_training import train
    from glioscope_training.cache import write
    from glioscope_training.export import TOLERANCE, check, export, load_weights
    from glioscope_training.infer import ort_predictor, segment

    cache, val, out = tmp_path / "cache", tmp_path / "val", tmp_path / "run"
    cache.mkdir()
    val.mkdir()
    for seed in range(4):
        write(seed, cache, 40)
    write(100000, val, 32)
    common = ["--out", str(out), "--cache", str(cache), "--val", str(val), "--crop", "32", "--batch", "1",
              "--val-every", "2", "--widths", "8,16,16,16", "--threads", "1"]
    train.main(common + ["--max-steps", "2"])
    assert (out / "last.pt").exists() and (out / "best.pt").exists()
    train.main(common + ["--max-steps", "3"])  # resumes from step 2
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 3
    assert len((out / "log.jsonl").read_text().splitlines()) >= 1

    model, _ = load_weights(out / "last.pt")
    onnx_path = export(model, tmp_path / "model.onnx", patch=32)
    assert check(model, onnx_path, patch=32) < TOLERANCE

    image = np.random.default_rng(0).uniform(0, 1000, (4, 40, 36, 30)).astype(np.float32)
    seg, prob = segment(ort_predictor(onnx_path, threads=1), image, (32, 32, 32), 0.25)
    assert seg.shape == (40, 36, 30) and prob.shape == (4, 40, 36, 30)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-4)
