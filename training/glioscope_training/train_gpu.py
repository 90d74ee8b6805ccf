"""Train on one GPU: CPU worker processes generate whole synthetic brains while the GPU trains.

    OMP_NUM_THREADS=1 python -m glioscope_training.train_gpu --out runs/gpu --minutes 6.5 \
        --workers 14 --init-onnx model_repository/glioscope_unet/1/model.onnx

The CPU recipe (`train.py`) reads cases that `cache` wrote to disk; a GPU consumes cases far faster
than two cores make them, so here a process pool makes them on all cores during training, and the
newest `--max-cases` stay on the GPU, z-scored over the whole brain (the inference contract), where
the patches are cut, flipped, intensity-jittered and channel-dropped. Same network, loss (CE + soft
Dice on the BraTS regions, 2 mm deep supervision) and EMA weights as `train.py`; bf16 autocast.

Validation every `--val-seconds` on held-out BraTS-size cases (seeds 200000+, never trained on)
through a GPU copy of the evaluation pipeline (z-score, Gaussian sliding window, largest-component
clean-up), `best.pt` by mean Dice. Optional: predicted volumes on a real case (`--real`, an npz with
`image` [4, X, Y, Z] in T1, T1c, T2, FLAIR order) at each validation, and a last evaluation of
`best.pt` on the held-out evaluation seeds (100000+) with the flip the metadata turns on.
Checkpoints hold weights only (no optimiser state): this run is not resumable, it is short.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing as mp
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .cache import make_full, make_heldout
from .infer import _gaussian_weight, _starts, largest_components
from .metrics import dice
from .model import build_model
from .synth import _template
from .train import deep_supervision_loss, init_from_onnx, optimiser_step, update_ema

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
VOXEL_ML = 1e-3  # 1 mm^3 voxels


def _make(job: tuple[str, int]) -> tuple[str, int, np.ndarray, np.ndarray]:
    kind, seed = job
    image, label = make_full(seed) if kind == "train" else make_heldout(seed)
    return kind, seed, image, label


class CaseFactory:
    """Keeps a process pool busy with case requests; held-out requests jump the queue."""

    def __init__(self, workers: int, first_train_seed: int,
                 make: Callable[[tuple[str, int]], tuple] = _make) -> None:
        if make is _make:
            _template()  # derived once here; forked workers inherit it
        self.pool = mp.get_context("fork").Pool(workers)
        self.make = make
        self.depth = 2 * workers
        self.next_seed = first_train_seed
        self.queue: collections.deque[tuple[str, int]] = collections.deque()
        self.pending: list = []

    def request(self, kind: str, seeds: list[int]) -> None:
        self.queue.extendleft((kind, s) for s in reversed(seeds))

    def poll(self) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        done, waiting = [], []
        for r in self.pending:  # one ready() per result: a second call could see it change
            (done if r.ready() else waiting).append(r)
        self.pending = waiting
        while len(self.pending) < self.depth:
            if not self.queue:
                self.queue.append(("train", self.next_seed))
                self.next_seed += 1
            self.pending.append(self.pool.apply_async(self.make, (self.queue.popleft(),)))
        results = []
        for r in done:
            try:
                results.append(r.get())
            except Exception as exc:  # noqa: BLE001 - one bad seed must not end the run
                print(json.dumps({"generator_error": repr(exc)[:300]}), flush=True)
        return results

    def close(self) -> None:
        self.pool.terminate()


def zscore_gpu(image: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    """`infer.zscore` on the GPU: per channel over voxels where any channel is non-zero."""
    image = image.float()
    brain = (image != 0).any(0)
    out = torch.zeros_like(image)
    if not bool(brain.any()):
        return out
    for c in range(image.shape[0]):
        v = image[c][brain]
        out[c] = (image[c] - v.mean()) / v.std(correction=0).clamp_min(1e-6)
    out *= brain
    return out.clamp_(-clip, clip)


def jitter_intensities(x: torch.Tensor) -> torch.Tensor:
    """Per patch and channel scale (0.85-1.15) and shift (+-0.2) in z-space, inside the brain only."""
    n, channels = x.shape[:2]
    brain = (x != 0).any(1, keepdim=True)
    scale = torch.empty(n, channels, 1, 1, 1, device=x.device).uniform_(0.85, 1.15)
    shift = torch.empty(n, channels, 1, 1, 1, device=x.device).uniform_(-0.2, 0.2)
    return torch.where(brain, x * scale + shift, torch.zeros_like(x))


class GpuCasePool:
    """The newest `max_cases` normalised training cases on the device; samples augmented patches."""

    def __init__(self, max_cases: int, device: torch.device, rng: np.random.Generator,
                 tumour_fraction: float = 0.5) -> None:
        self.max_cases, self.device, self.rng = max_cases, device, rng
        self.tumour_fraction = tumour_fraction
        self.cases: collections.deque[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = collections.deque()
        self.added = 0

    def add(self, image: np.ndarray, label: np.ndarray) -> None:
        img = zscore_gpu(torch.from_numpy(image).to(self.device)).half()
        tumour = np.argwhere(label > 0)[::97].astype(np.int32)
        self.cases.append((img, torch.from_numpy(label).to(self.device), tumour))
        self.added += 1
        while len(self.cases) > self.max_cases:
            self.cases.popleft()

    def _origin(self, shape: tuple[int, ...], tumour: np.ndarray, crop: int) -> list[int]:
        if len(tumour) and self.rng.uniform() < self.tumour_fraction:
            c = tumour[self.rng.integers(len(tumour))] + self.rng.integers(-crop // 3, crop // 3 + 1, 3)
            return [int(np.clip(c[a] - crop // 2, 0, max(0, shape[a] - crop))) for a in range(3)]
        return [int(self.rng.integers(0, max(1, shape[a] - crop + 1))) for a in range(3)]

    def sample(self, batch: int, crop: int, channel_dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch):
            img, lab, tumour = self.cases[int(self.rng.integers(len(self.cases)))]
            o = self._origin(tuple(lab.shape), tumour, crop)
            x = img[:, o[0]:o[0] + crop, o[1]:o[1] + crop, o[2]:o[2] + crop].float()
            y = lab[o[0]:o[0] + crop, o[1]:o[1] + crop, o[2]:o[2] + crop].long()
            pad = [crop - n for n in y.shape]
            if any(pad):  # a case smaller than the patch: zero background around it
                x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
                y = F.pad(y, (0, pad[2], 0, pad[1], 0, pad[0]))
            if self.rng.uniform() < 0.5:  # left-right flip
                x, y = x.flip(1), y.flip(0)
            xs.append(x)
            ys.append(y)
        x, y = jitter_intensities(torch.stack(xs)), torch.stack(ys)
        n = x.shape[0]
        keep = torch.ones(n, 4, 1, 1, 1, device=x.device)
        for b in range(n):
            if self.rng.uniform() < channel_dropout:
                keep[b, int(self.rng.integers(4))] = 0
        return x * keep, y


@torch.no_grad()
def segment_gpu(model: torch.nn.Module, image: np.ndarray, patch: int = 160, overlap: float = 0.25,
                flip: bool = False, device: torch.device | None = None) -> np.ndarray:
    """`infer.segment` on the GPU (same windows, weights and clean-up) for a raw [4, X, Y, Z] image."""
    device = device or next(model.parameters()).device
    x = zscore_gpu(torch.from_numpy(np.ascontiguousarray(image, np.float32)).to(device))
    shape = x.shape[1:]
    p = (patch,) * 3

    def pad(vol: torch.Tensor) -> torch.Tensor:  # after any flip, as `infer.segment` does
        return F.pad(vol, tuple(v for s in reversed(shape) for v in (0, max(0, patch - s))))

    full = pad(x).shape[1:]
    step = max(1, int(patch * (1 - overlap)))
    starts = [(i, j, k) for i in _starts(full[0], patch, step) for j in _starts(full[1], patch, step)
              for k in _starts(full[2], patch, step)]
    w = torch.from_numpy(_gaussian_weight(p)).to(device)

    def window_probs(vol: torch.Tensor) -> torch.Tensor:
        acc = torch.zeros((4,) + tuple(full), device=device)
        wsum = torch.zeros(tuple(full), device=device)
        for i, j, k in starts:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(vol[None, :, i:i + patch, j:j + patch, k:k + patch])
            acc[:, i:i + patch, j:j + patch, k:k + patch] += logits.float()[0].softmax(0) * w
            wsum[i:i + patch, j:j + patch, k:k + patch] += w
        return acc / wsum

    prob = window_probs(pad(x))[:, :shape[0], :shape[1], :shape[2]]
    if flip:
        mirrored = window_probs(pad(x.flip(1)))[:, :shape[0], :shape[1], :shape[2]]
        prob = (prob + mirrored.flip(1)) / 2
    seg = prob.argmax(0).to(torch.uint8)
    seg[~torch.from_numpy(np.any(image != 0, axis=0)).to(device)] = 0
    return largest_components(seg.cpu().numpy())


def region_dice(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    return {name: dice(np.isin(pred, labs), np.isin(label, labs)) for name, labs in REGIONS.items()}


def score(model: torch.nn.Module, cases: list[tuple[np.ndarray, np.ndarray]], flip: bool = False
          ) -> dict[str, object]:
    model.eval()
    per_case = [region_dice(segment_gpu(model, img, flip=flip), lab) for img, lab in cases]
    model.train()
    res: dict[str, object] = {k: float(np.mean([c[k] for c in per_case])) for k in REGIONS}
    res["mean"] = float(np.mean([res[k] for k in REGIONS]))
    res["per_case"] = [{k: round(v, 4) for k, v in c.items()} for c in per_case]
    return res


def real_volumes(model: torch.nn.Module, image: np.ndarray) -> dict[str, float]:
    model.eval()
    seg = segment_gpu(model, image)
    model.train()
    vols = {f"label{v}": float((seg == v).sum() * VOXEL_ML) for v in (1, 2, 3)}
    vols.update({k: float(np.isin(seg, labs).sum() * VOXEL_ML) for k, labs in REGIONS.items()})
    return vols


def seed_range(spec: str) -> list[int]:
    """"start:stop" -> seeds; "" -> none."""
    if not spec:
        return []
    a, b = (int(v) for v in spec.split(":"))
    return list(range(a, b))


def val_seeds_ok(args: argparse.Namespace) -> bool:
    held_out = seed_range(args.val_seeds) + seed_range(args.eval_seeds)
    # a run makes about 1-2 cases a second: a 100000-seed gap is never crossed
    return bool(seed_range(args.val_seeds)) and args.first_seed + 100_000 <= min(held_out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=6.5, help="training wall-clock budget (cosine LR over it)")
    ap.add_argument("--workers", type=int, default=14, help="case generator processes")
    ap.add_argument("--first-seed", type=int, default=0, help="first training seed")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--channel-dropout", type=float, default=0.2)
    ap.add_argument("--tumour-fraction", type=float, default=0.5)
    ap.add_argument("--max-cases", type=int, default=400)
    ap.add_argument("--min-cases", type=int, default=16, help="cases on the device before training starts")
    ap.add_argument("--widths", default="16,32,64,96")
    ap.add_argument("--init-onnx", help="start from an exported model's weights")
    ap.add_argument("--init-checkpoint", help="start from a checkpoint's EMA weights")
    ap.add_argument("--val-seeds", default="200000:200012", help="start:stop of held-out validation seeds")
    ap.add_argument("--eval-seeds", default="100000:100012", help="start:stop, scored at the end ('' = none)")
    ap.add_argument("--val-seconds", type=float, default=75.0)
    ap.add_argument("--real", help="npz with `image` [4,X,Y,Z] of a real case: volumes at each validation")
    ap.add_argument("--device", default="auto", help="auto: cuda when available (checked after the fork)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("a")

    def record(rec: dict) -> None:
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    if not val_seeds_ok(args):
        raise SystemExit("--val-seeds must name at least one seed, and training seeds must stay below "
                         "the validation and evaluation seeds")
    t0 = time.time()
    factory = CaseFactory(args.workers, args.first_seed)  # before CUDA starts: the pool forks
    val_seeds, eval_seeds = seed_range(args.val_seeds), seed_range(args.eval_seeds)
    factory.request("val", val_seeds)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    model_kwargs = {"widths": tuple(int(w) for w in args.widths.split(","))}
    model = build_model(**model_kwargs).to(device)
    if args.init_onnx:
        record({"init_onnx": args.init_onnx, "tensors": init_from_onnx(model, args.init_onnx)})
        model.to(device)
    if args.init_checkpoint:  # a checkpoint of this or the CPU recipe: start from its EMA weights
        ck = torch.load(args.init_checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(ck["ema"])
        record({"init_checkpoint": args.init_checkpoint, "step": ck.get("step")})
    ema = build_model(**model_kwargs).to(device)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    pool = GpuCasePool(args.max_cases, device, rng, args.tumour_fraction)
    held: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {"val": {}, "eval": {}}
    real = np.load(args.real)["image"].astype(np.float32) if args.real else None

    def take_cases() -> None:
        for kind, seed, image, label in factory.poll():
            if kind == "train":
                pool.add(image, label)
            else:
                held[kind][seed] = (image, label)

    while len(pool.cases) < args.min_cases or len(held["val"]) < len(val_seeds):
        take_cases()
        if time.time() - t0 > 300:
            raise SystemExit(f"only {len(pool.cases)} training and {len(held['val'])} validation cases after 300 s")
        time.sleep(0.2)
    record({"ready_s": round(time.time() - t0, 1), "cases": pool.added, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None})

    best, step, losses = -1.0, 0, []
    val_cases = [held["val"][s] for s in val_seeds]

    def save(path: Path, extra: dict) -> None:
        def cpu(m: torch.nn.Module) -> dict:
            return {k: v.detach().cpu() for k, v in m.state_dict().items()}

        torch.save({"model": cpu(model), "ema": cpu(ema), "step": step, "model_kwargs": model_kwargs,
                    **extra}, path)

    validated_step = -1

    def validate() -> None:
        nonlocal best, validated_step
        if step == validated_step:
            return
        validated_step = step
        res = score(ema, val_cases)
        rec = {"step": step, "minutes": round((time.time() - t_train) / 60, 2), "cases": pool.added,
               "val": {k: round(v, 4) for k, v in res.items() if k != "per_case"}}
        if real is not None:
            rec["real_ml"] = {k: round(v, 1) for k, v in real_volumes(ema, real).items()}
        record(rec)
        if res["mean"] > best:
            best = float(res["mean"])
            save(out / "best.pt", {"val": res})
        save(out / "last.pt", {"val": res})

    budget = args.minutes * 60
    t_train = time.time()
    last_val = t_train
    model.train()
    eval_requested = False
    while time.time() - t_train < budget:
        frac = min(1.0, (time.time() - t_train) / budget)
        if not eval_requested and frac > 0.6:
            factory.request("eval", eval_seeds)
            eval_requested = True
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = pool.sample(args.batch, args.crop, args.channel_dropout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, aux = model(x, return_aux=True)
        loss = deep_supervision_loss(logits.float(), aux.float(), y)
        optimiser_step(model, opt, loss)
        step += 1
        update_ema(ema, model, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.detach())
        if step % 50 == 0:
            take_cases()
            record({"step": step, "loss": round(float(torch.stack(losses).mean()), 4), "lr": round(lr, 6),
                    "cases": pool.added, "minutes": round((time.time() - t_train) / 60, 2)})
            losses = []
        if time.time() - last_val > args.val_seconds:
            validate()
            last_val = time.time()
    validate()
    record({"done_step": step, "best_val_mean": round(best, 4), "train_minutes": round((time.time() - t_train) / 60, 2)})

    if eval_seeds:
        deadline = time.time() + 120
        while len(held["eval"]) < len(eval_seeds) and time.time() < deadline:
            take_cases()
            time.sleep(0.5)
        cases = [held["eval"][s] for s in eval_seeds if s in held["eval"]]
        for name in ("best", "last"):
            ck = torch.load(out / f"{name}.pt", map_location=device, weights_only=False)
            ema.load_state_dict(ck["ema"])
            res = score(ema, cases, flip=True)
            record({"eval": name, "step": ck["step"], "n": len(cases), "flip": True,
                    **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}})
    factory.close()


if __name__ == "__main__":
    main()
