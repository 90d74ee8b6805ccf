"""Export a checkpoint to ONNX (opset 17, dynamic batch) and check onnxruntime against PyTorch.

    python -m glioscope_training.export --checkpoint training/runs/main/best.pt \
        --out model_repository/glioscope_unet/3/model.onnx   (a new version folder)

`--checkpoint` given several times exports the average of their weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .model import build_model

OPSET = 17
TOLERANCE = 1e-3  # max |logit difference| allowed between onnxruntime and PyTorch
IO_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class HalfIO(torch.nn.Module):
    """float16 image in, float16 logits out, float32 inside: half the bytes between the worker and
    Triton (a 160³ patch is 65 MB each way in float32), the same network."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float()).half()


def load_weights(checkpoint: str | Path, prefer_ema: bool = True) -> tuple[torch.nn.Module, dict]:
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = build_model(**ck.get("model_kwargs", {}))
    state = ck.get("ema") if prefer_ema and ck.get("ema") is not None else ck["model"]
    model.load_state_dict(state)
    model.eval()
    return model, ck


def average_weights(checkpoints: list[str | Path], prefer_ema: bool = True) -> tuple[torch.nn.Module, dict]:
    """Uniform average of several checkpoints' weights (a "model soup": runs fine-tuned from one
    another stay in one basin, and their average often validates better than either)."""
    models = [load_weights(c, prefer_ema) for c in checkpoints]
    model, ck = models[0]
    if len(models) == 1:
        return model, ck
    for path, (_, other) in zip(checkpoints[1:], models[1:]):
        if other.get("model_kwargs", {}) != ck.get("model_kwargs", {}):
            raise SystemExit(f"{path} is another network ({other.get('model_kwargs')}) than {checkpoints[0]}")
        if prefer_ema and (other.get("ema") is None) != (ck.get("ema") is None):
            raise SystemExit("cannot average EMA weights with plain ones: give checkpoints of one kind")
    states = [m.state_dict() for m, _ in models]
    averaged = {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype) if v.is_floating_point() else v
                for k, v in states[0].items()}
    model.load_state_dict(averaged)
    return model, {**ck, "step": [c.get("step") for _, c in models]}


def export(model: torch.nn.Module, out: str | Path, patch: int = 128, io_dtype: str = "float32") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if io_dtype == "float16":
        model = HalfIO(model).eval()
    x = torch.zeros(1, 4, patch, patch, patch, dtype=IO_DTYPES[io_dtype])
    torch.onnx.export(
        model, (x,), str(out), input_names=["image"], output_names=["logits"], opset_version=OPSET,
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True,
        dynamo=False,
    )
    return out


def check(model: torch.nn.Module, onnx_path: str | Path, patch: int = 128, seed: int = 0) -> float:
    """Max absolute logit difference between onnxruntime and PyTorch (float32, on the same input) on
    a random batch of 2; for a float16-I/O file, beyond the float16 rounding of the logits."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    half = sess.get_inputs()[0].type == "tensor(float16)"
    x = np.random.default_rng(seed).standard_normal((2, 4, patch, patch, patch)).astype(np.float16 if half else np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x.astype(np.float32))).numpy()
    got = sess.run(["logits"], {"image": x})[0].astype(np.float32)
    rounding = np.abs(ref) * 2.0**-11 if half else 0.0  # half a float16 step at each logit
    return float(np.max(np.abs(ref - got) - rounding))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True, action="append",
                    help="a checkpoint; given several times, their weights are averaged")
    ap.add_argument("--out", required=True,
                    help="the ONNX file, e.g. a new version folder: model_repository/glioscope_unet/3/model.onnx")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--no-ema", action="store_true")
    ap.add_argument("--io-dtype", choices=sorted(IO_DTYPES), default="float32",
                    help="the file's image and logits tensors (float16: half the bytes to Triton)")
    args = ap.parse_args(argv)
    model, ck = average_weights(args.checkpoint, prefer_ema=not args.no_ema)
    out = export(model, args.out, args.patch, args.io_dtype)
    diff = check(model, out, args.patch)
    size = out.stat().st_size / 1e6
    print(f"exported {out} ({size:.2f} MB, step {ck.get('step')}); ORT vs PyTorch max |diff| = {diff:.2e}")
    if diff > TOLERANCE:
        raise SystemExit(f"onnxruntime differs from PyTorch by {diff:.2e} > {TOLERANCE}")


if __name__ == "__main__":
    main()
