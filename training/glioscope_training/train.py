"""Train the compact U-Net on synthetic crops (CPU, resumable, logged).

    nice -n 10 python -m glioscope_training.train --out training/runs/main --cache training/runs/cache \
        --val training/runs/val --minutes 60

Reads crops written by `glioscope_training.cache` (new files are picked up while training), takes
random 96^3 sub-crops with left-right flips, intensity jitter and channel dropout; loss is
cross-entropy + soft Dice (+ a 2 mm deep-supervision term). Keeps EMA weights; validates the EMA
model on fixed held-out synthetic crops (seeds 100000+) and keeps `best.pt` by mean Dice.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cache import StaleCase, read_case
from .infer import segment, zscore
from .metrics import dice
from .model import build_model


def normalise(image: np.ndarray, label: np.ndarray | None = None, clip: float = 5.0) -> np.ndarray:
    """Per-channel z-score over brain voxels, tumour included: the inference contract
    (metadata.json, `infer.zscore`). `label` is accepted for old callers and ignored."""
    del label
    return zscore(image, clip)


class CropPool:
    """Keeps up to `max_cases` normalised cases in memory, refreshing from a folder.

    Cases are whole brains (`cache --full`) or older 112^3 crops. A sample is a `crop`^3 patch:
    with probability `tumour_fraction` centred near a random tumour voxel, otherwise anywhere in
    the volume (brain edges and the zero background, as sliding-window inference sees them).
    """

    def __init__(self, folder: Path, max_cases: int, rng: np.random.Generator,
                 tumour_fraction: float = 0.5) -> None:
        self.folder, self.max_cases, self.rng = folder, max_cases, rng
        self.tumour_fraction = tumour_fraction
        self.cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.seen: set[str] = set()

    def refresh(self) -> None:
        new = sorted(p for p in self.folder.glob("case_*.npz") if p.name not in self.seen)
        for p in new[-self.max_cases:]:
            try:
                img, lab = read_case(p)
            except StaleCase as exc:
                self.seen.add(p.name)
                print(f"skipped: {exc}", flush=True)
                continue
            except Exception:  # noqa: BLE001 - half-written file, retry later
                continue
            self.seen.add(p.name)
            tumour = np.argwhere(lab > 0)[::97].astype(np.int16)
            self.cases[p.name] = (normalise(img).astype(np.float16), lab, tumour)
            while len(self.cases) > self.max_cases:
                self.cases.pop(next(iter(self.cases)))

    def _origin(self, shape: tuple[int, ...], tumour: np.ndarray, crop: int) -> list[int]:
        if len(tumour) and self.rng.uniform() < self.tumour_fraction:
            c = tumour[self.rng.integers(len(tumour))] + self.rng.integers(-crop // 3, crop // 3 + 1, 3)
            return [int(np.clip(c[a] - crop // 2, 0, max(0, shape[a] - crop))) for a in range(3)]
        return [int(self.rng.integers(0, max(1, shape[a] - crop + 1))) for a in range(3)]

    def sample(self, crop: int, channel_dropout: float) -> tuple[np.ndarray, np.ndarray]:
        keys = list(self.cases)
        img, lab, tumour = self.cases[keys[self.rng.integers(len(keys))]]
        o = self._origin(lab.shape, tumour, crop)
        sl = tuple(slice(o[a], o[a] + crop) for a in range(3))
        x = img[(slice(None),) + sl].astype(np.float32)
        y = lab[sl].astype(np.int64)
        pad = [(0, crop - n) for n in y.shape]
        if any(p[1] for p in pad):  # a case smaller than the patch: zero background around it
            x, y = np.pad(x, [(0, 0)] + pad), np.pad(y, pad)
        if self.rng.uniform() < 0.5:  # left-right flip
            x, y = x[:, ::-1], y[::-1]
        brain = np.any(x != 0, axis=0)
        for c in range(4):  # intensity jitter in z-space
            x[c] = np.where(brain, x[c] * self.rng.uniform(0.85, 1.15) + self.rng.uniform(-0.2, 0.2), 0)
        if self.rng.uniform() < channel_dropout:
            x[self.rng.integers(4)] = 0
        return np.ascontiguousarray(x), np.ascontiguousarray(y)


def load_val(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out cases, raw intensities (validation runs the evaluation's own pipeline on them)."""
    out = []
    for p in sorted(folder.glob("case_*.npz")):
        try:
            image, label = read_case(p)
        except StaleCase as exc:
            raise SystemExit(f"{exc}: make the validation cases again (cache --heldout)") from exc
        out.append((image.astype(np.float32), label))
    return out


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    # region-style Dice on WT (1,2,3), TC (1,3), ET (3), as BraTS scores them
    regions_p = [prob[:, 1:].sum(1), prob[:, 1] + prob[:, 3], prob[:, 3]]
    regions_t = [onehot[:, 1:].sum(1), onehot[:, 1] + onehot[:, 3], onehot[:, 3]]
    loss = 0.0
    for p, t in zip(regions_p, regions_t):
        inter = (p * t).sum()
        loss = loss + 1 - (2 * inter + 1) / (p.sum() + t.sum() + 1)
    return loss / 3


def deep_supervision_loss(logits: torch.Tensor, aux: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE + soft Dice at 1 mm, plus half of the same on the 2 mm deep-supervision output."""
    target2 = target[:, ::2, ::2, ::2]
    loss = F.cross_entropy(logits, target) + soft_dice_loss(logits, target)
    return loss + 0.5 * (F.cross_entropy(aux, target2) + soft_dice_loss(aux, target2))


def optimiser_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
        if pe.dtype.is_floating_point:
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        else:
            pe.copy_(pm)


def validate(model: torch.nn.Module, val: list[tuple[np.ndarray, np.ndarray]],
             patch: int = 160) -> dict[str, float]:
    """Dice per BraTS region of the evaluation's pipeline (z-score, Gaussian sliding window,
    largest-component clean-up) on held-out cases, so checkpoints are picked by what users get."""
    model.eval()
    scores = {"WT": [], "TC": [], "ET": []}

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    for img, lab in val:
        p = min(patch, 16 * -(-max(lab.shape) // 16))
        pred, _ = segment(predict, img, (p, p, p))
        for name, labs in (("WT", (1, 2, 3)), ("TC", (1, 3)), ("ET", (3,))):
            scores[name].append(dice(np.isin(pred, labs), np.isin(lab, labs)))
    model.train()
    res = {k: float(np.mean(v)) for k, v in scores.items()}
    res["mean"] = float(np.mean(list(res.values())))
    return res


def init_from_onnx(model: torch.nn.Module, onnx_path: str | Path) -> int:
    """Start from an exported model's weights (its ONNX initializers carry the parameter names);
    the training-only deep-supervision head keeps its fresh initialisation. Returns tensors loaded."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    state = model.state_dict()
    loaded = {k: torch.from_numpy(inits[k].copy()) for k in state if k in inits}
    for k, v in loaded.items():
        if v.shape != state[k].shape:
            raise ValueError(f"{onnx_path}: {k} has shape {tuple(v.shape)}, model wants {tuple(state[k].shape)}")
    missing = [k for k in state if k not in loaded and not k.startswith("aux.")]
    if missing:
        raise ValueError(f"{onnx_path} lacks weights for {missing[:5]}")
    model.load_state_dict(loaded, strict=False)
    return len(loaded)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="training/runs/main")
    ap.add_argument("--cache", default="training/runs/cache")
    ap.add_argument("--val", default="training/runs/val")
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget (cosine LR over it)")
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--channel-dropout", type=float, default=0.2)
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--max-cases", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", default="16,32,64,96")
    ap.add_argument("--tumour-fraction", type=float, default=0.5, help="patches centred near the tumour")
    ap.add_argument("--val-patch", type=int, default=160)
    ap.add_argument("--init-onnx", help="start from this exported model's weights (fine-tuning)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_kwargs = {"widths": tuple(int(w) for w in args.widths.split(","))}
    model = build_model(**model_kwargs)
    if args.init_onnx and not (out / "last.pt").exists():
        print(f"initialised {init_from_onnx(model, args.init_onnx)} tensors from {args.init_onnx}", flush=True)
    ema = build_model(**model_kwargs)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed, best = 0, 0.0, -1.0
    last = out / "last.pt"
    if last.exists():  # resume
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, best = ck["step"], ck["elapsed"], ck.get("best", -1.0)
        print(f"resumed from step {step}", flush=True)
    rng = np.random.default_rng(args.seed + step)
    pool = CropPool(Path(args.cache), args.max_cases, rng, args.tumour_fraction)
    while True:
        pool.refresh()
        if len(pool.cases) >= 4:
            break
        print("waiting for cached crops ...", flush=True)
        time.sleep(10)
    val = load_val(Path(args.val))
    log = (out / "log.jsonl").open("a")
    budget = args.minutes * 60
    t_start = time.time() - elapsed

    def save(path: Path) -> None:
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "elapsed": time.time() - t_start, "best": best,
                    "model_kwargs": model_kwargs}, path)

    model.train()
    losses = []
    while step < args.max_steps and time.time() - t_start < budget:
        frac = min(1.0, (time.time() - t_start) / budget)
        lr = args.lr * min(1.0, (step + 1) / 30) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        xs, ys = zip(*[pool.sample(args.crop, args.channel_dropout) for _ in range(args.batch)])
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        logits, aux = model(x, return_aux=True)
        loss = deep_supervision_loss(logits, aux, y)
        optimiser_step(model, opt, loss)
        step += 1
        update_ema(ema, model, min(0.99, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 10 == 0:
            pool.refresh()
            rec = {"step": step, "loss": float(np.mean(losses)), "lr": lr, "cases": len(pool.seen),
                   "minutes": (time.time() - t_start) / 60}
            losses = []
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % args.val_every == 0:
            res = validate(ema, val, args.val_patch) if val else {"mean": 0.0}
            rec = {"step": step, "val": res, "minutes": (time.time() - t_start) / 60}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if res["mean"] > best:
                best = res["mean"]
                save(out / "best.pt")
            save(out / f"ckpt_{step:05d}.pt")
            save(last)
    save(last)
    print(f"done at step {step}, best val mean Dice {best:.3f}", flush=True)


if __name__ == "__main__":
    main()
