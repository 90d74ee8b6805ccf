"""Fine-tune on real expert-labelled cases mixed with synthetic ones, cross-validated, on one GPU.

    OMP_NUM_THREADS=1 python -m glioscope_training.train_real --out runs/real --real runs/real18.npz.xz \
        --init-onnx runs/init.onnx --folds 5 --minutes 5.5 --workers 14

Trains `--folds` fold models (each on every real case but its fold's) and one model on all real cases
("all", the one to ship), interleaved step by step in one process so that they share the synthetic
case factory and the GPU. Each batch holds `--real-per-batch` real patches (random rotation, scaling
and mirroring on the GPU, intensity jitter) and synthetic patches from `train_gpu`'s generator.
Sequence dropout: with probability `--sequence-dropout` a patch keeps only one of the clinically
common subsets (FLAIR + T1c, T1c alone, FLAIR alone, three of four); a missing sequence is an all-zero
channel, which is how inference presents it, so one network serves every protocol.

No checkpoint is chosen on a test fold: every model is its EMA weights at the end of the same budget.
At the end each fold model segments its own test cases (all four sequences with the mirrored pass,
and each sequence subset), the starting model segments every real case for comparison, and "all" and
the starting model segment held-out synthetic cases; everything lands in `results.json`. These are
the GPU copy of the evaluation pipeline on already z-scored, cropped cases; the figures to publish are
measured afterwards through the platform's own path (`bench/eval_real_cases.py --cv`).
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

from .model import build_model
from .real_cases import folds, load_packed
from .train import deep_supervision_loss, init_from_onnx, optimiser_step, update_ema
from .train_gpu import CaseFactory, GpuCasePool, jitter_intensities, region_dice, seed_range, segment_gpu

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")
# Subsets a protocol may deliver (what the platform segments), with their sampling weights.
SUBSETS: dict[str, tuple[tuple[str, ...], float]] = {
    "FLAIR+T1c": (("T1c", "FLAIR"), 0.3),
    "T1c": (("T1c",), 0.1),
    "FLAIR": (("FLAIR",), 0.15),
    "no T1": (("T1c", "T2", "FLAIR"), 0.15),
    "no T2": (("T1", "T1c", "FLAIR"), 0.1),
    "no FLAIR": (("T1", "T1c", "T2"), 0.1),
    "no T1c": (("T1", "T2", "FLAIR"), 0.1),
}


def presence(subset: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([float(s in subset) for s in SEQUENCES])


def rotation(rng: np.random.Generator, max_rad: float) -> np.ndarray:
    out = np.eye(3)
    for axis in range(3):
        a = rng.uniform(-max_rad, max_rad)
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


class RealCasePool:
    """Real cases (z-scored, cropped to the brain) on the device; samples spatially augmented patches."""

    def __init__(self, cases: dict[str, tuple[np.ndarray, np.ndarray]], device: torch.device,
                 rng: np.random.Generator, tumour_fraction: float = 0.7, max_rotation: float = 0.26,
                 scale: tuple[float, float] = (0.85, 1.15)) -> None:
        self.rng, self.device = rng, device
        self.tumour_fraction, self.max_rotation, self.scale = tumour_fraction, max_rotation, scale
        self.cases = {name: (torch.from_numpy(img).to(device).half(), torch.from_numpy(lab).to(device),
                             np.argwhere(lab > 0)[::53].astype(np.int32))
                      for name, (img, lab) in cases.items()}

    def _window(self, name: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, lab, tumour = self.cases[name]
        shape = lab.shape
        if len(tumour) and self.rng.uniform() < self.tumour_fraction:
            centre = tumour[self.rng.integers(len(tumour))] + self.rng.integers(-size // 4, size // 4 + 1, 3)
        else:
            centre = np.array([self.rng.integers(0, s) for s in shape])
        lo = [int(c) - size // 2 for c in centre]
        src = tuple(slice(max(0, a), min(s, a + size)) for a, s in zip(lo, shape))
        dst = tuple(slice(sl.start - a, sl.stop - a) for sl, a in zip(src, lo))
        x = torch.zeros((4, size, size, size), device=self.device)
        y = torch.zeros((size, size, size), device=self.device)
        x[(slice(None),) + dst] = img[(slice(None),) + src].float()
        y[dst] = lab[src].float()
        return x, y

    def sample(self, names: list[str], n: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
        big = int(math.ceil(crop * 1.45))  # room for the rotation and the zoom-out
        xs, ys, thetas = [], [], []
        for _ in range(n):
            x, y = self._window(names[int(self.rng.integers(len(names)))], big)
            xs.append(x)
            ys.append(y)
            m = rotation(self.rng, self.max_rotation) * self.rng.uniform(*self.scale) * (crop / big)
            if self.rng.uniform() < 0.5:  # left-right (first axis is x, RAS)
                m[:, 0] *= -1
            thetas.append(np.concatenate([m, np.zeros((3, 1))], axis=1))
        x, y = torch.stack(xs), torch.stack(ys)[:, None]
        theta = torch.tensor(np.stack(thetas), dtype=torch.float32, device=self.device)
        grid = F.affine_grid(theta, [n, 4, crop, crop, crop], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
        return jitter_intensities(x), y


def drop_sequences(x: torch.Tensor, rng: np.random.Generator, probability: float) -> torch.Tensor:
    names = list(SUBSETS)
    weights = np.array([SUBSETS[n][1] for n in names])
    keep = torch.ones(x.shape[0], 4, 1, 1, 1, device=x.device)
    for b in range(x.shape[0]):
        if rng.uniform() < probability:
            keep[b, :, 0, 0, 0] = presence(SUBSETS[names[int(rng.choice(len(names), p=weights / weights.sum()))]][0])
    return x * keep


def subset_image(image: np.ndarray, subset: tuple[str, ...]) -> np.ndarray:
    out = image.copy()
    for c, s in enumerate(SEQUENCES):
        if s not in subset:
            out[c] = 0
    return out


class Trainee:
    def __init__(self, name: str, train_cases: list[str], test_cases: list[str], init: dict,
                 model_kwargs: dict, device: torch.device, lr: float) -> None:
        self.name, self.train_cases, self.test_cases = name, train_cases, test_cases
        self.model = build_model(**model_kwargs).to(device)
        self.model.load_state_dict(init)
        self.ema = build_model(**model_kwargs).to(device)
        self.ema.load_state_dict(init)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=1e-4)
        self.losses: list[torch.Tensor] = []


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--real", required=True, help="cases packed by `real_cases pack`")
    ap.add_argument("--init-onnx", help="start from an exported model's weights")
    ap.add_argument("--init-dir", help="a previous run's folder: each model continues from its own <name>.pt "
                    "(a second stage; the start model for the comparisons stays --init-onnx)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=5.5, help="training wall-clock budget (cosine LR over it)")
    ap.add_argument("--workers", type=int, default=14, help="synthetic case generator processes")
    ap.add_argument("--crop", type=int, default=112)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--real-per-batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--sequence-dropout", type=float, default=0.3)
    ap.add_argument("--max-cases", type=int, default=300)
    ap.add_argument("--min-cases", type=int, default=12, help="synthetic cases on the device before training")
    ap.add_argument("--widths", default="16,32,64,96")
    ap.add_argument("--eval-seeds", default="100000:100006", help="held-out synthetic seeds scored at the end")
    ap.add_argument("--patch", type=int, default=160, help="sliding-window patch of the final evaluation")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("a")
    results: dict[str, object] = {"args": vars(args)}

    def record(rec: dict) -> None:
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    def write_results() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=1))

    t0 = time.time()
    factory = CaseFactory(args.workers, 0)  # before CUDA starts: the pool forks
    eval_seeds = seed_range(args.eval_seeds)
    factory.request("eval", eval_seeds)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(args.seed)
    model_kwargs = {"widths": tuple(int(w) for w in args.widths.split(","))}
    start = build_model(**model_kwargs)
    if args.init_onnx:
        record({"init_onnx": args.init_onnx, "tensors": init_from_onnx(start, args.init_onnx)})
    init = {k: v.clone() for k, v in start.state_dict().items()}
    start.to(device)

    real = load_packed(Path(args.real))
    names = sorted(real)
    test_folds = folds(names, args.folds)
    def init_of(name: str) -> dict:
        if not args.init_dir:
            return init
        ck = torch.load(Path(args.init_dir) / f"{name}.pt", map_location="cpu", weights_only=False)
        if ck.get("test_cases", []) != (test_folds[int(name[4:])] if name.startswith("fold") else []):
            raise SystemExit(f"{args.init_dir}/{name}.pt held out other cases than this run's {name}")
        return ck["ema"]

    trainees = [Trainee(f"fold{i}", [n for n in names if n not in f], f, init_of(f"fold{i}"), model_kwargs, device,
                        args.lr) for i, f in enumerate(test_folds)]
    trainees.append(Trainee("all", names, [], init_of("all"), model_kwargs, device, args.lr))
    results["folds"] = {t.name: {"train": t.train_cases, "test": t.test_cases} for t in trainees}
    real_pool = RealCasePool(real, device, rng)
    synth_pool = GpuCasePool(args.max_cases, device, rng, tumour_fraction=0.5)
    held: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def take_cases() -> None:
        for kind, seed, image, label in factory.poll():
            if kind == "train":
                synth_pool.add(image, label)
            else:
                held[seed] = (image, label)

    while len(synth_pool.cases) < args.min_cases:
        take_cases()
        if time.time() - t0 > 300:
            raise SystemExit(f"only {len(synth_pool.cases)} synthetic cases after 300 s")
        time.sleep(0.2)
    record({"ready_s": round(time.time() - t0, 1), "synthetic_cases": synth_pool.added, "real_cases": len(names),
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None})

    budget, step = args.minutes * 60, 0
    n_real = min(args.real_per_batch, args.batch)
    t_train = time.time()
    for t in trainees:
        t.model.train()
    while time.time() - t_train < budget:
        frac = min(1.0, (time.time() - t_train) / budget)
        lr = args.lr * min(1.0, (step + 1) / 30) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for t in trainees:
            for g in t.opt.param_groups:
                g["lr"] = lr
            xr, yr = real_pool.sample(t.train_cases, n_real, args.crop)
            if args.batch > n_real:
                xs, ys = synth_pool.sample(args.batch - n_real, args.crop, channel_dropout=0.0)
                xr, yr = torch.cat([xr, xs]), torch.cat([yr, ys])
            x = drop_sequences(xr, rng, args.sequence_dropout)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits, aux = t.model(x, return_aux=True)
            loss = deep_supervision_loss(logits.float(), aux.float(), yr)
            optimiser_step(t.model, t.opt, loss)
            update_ema(t.ema, t.model, min(args.ema, (1 + step) / (10 + step)))
            t.losses.append(loss.detach())
        step += 1
        if step % 50 == 0:
            take_cases()
            record({"step": step, "lr": round(lr, 6), "synthetic_cases": synth_pool.added,
                    "minutes": round((time.time() - t_train) / 60, 2),
                    "loss": {t.name: round(float(torch.stack(t.losses).mean()), 4) for t in trainees}})
            for t in trainees:
                t.losses = []
    results["steps"] = step
    results["train_minutes"] = round((time.time() - t_train) / 60, 2)
    for t in trainees:  # the weights first: an evaluation that runs out of time must not lose them
        torch.save({"ema": {k: v.detach().cpu() for k, v in t.ema.state_dict().items()}, "step": step,
                    "model_kwargs": model_kwargs, "train_cases": t.train_cases, "test_cases": t.test_cases},
                   out / f"{t.name}.pt")
    record({"done_step": step, "train_minutes": results["train_minutes"], "saved": [t.name for t in trainees]})
    factory.close()
    write_results()

    def seg(model: torch.nn.Module, image: np.ndarray, flip: bool) -> np.ndarray:
        model.eval()
        return segment_gpu(model, image, patch=args.patch, flip=flip, device=device)

    cv: list[dict] = []
    results["cv"] = cv
    for t in trainees:
        for name in t.test_cases:
            image, label = real[name]
            row = {"case": name, "model": t.name, "all": region_dice(seg(t.ema, image, True), label)}
            for subset, (keep, _) in SUBSETS.items():
                row[subset] = region_dice(seg(t.ema, subset_image(image, keep), False), label)
            cv.append(row)
            record({"cv": row})
            write_results()
    baseline: list[dict] = []
    results["baseline_real"] = baseline
    for name in names:
        image, label = real[name]
        row = {"case": name, "all": region_dice(seg(start, image, True), label),
               "FLAIR+T1c": region_dice(seg(start, subset_image(image, SUBSETS["FLAIR+T1c"][0]), False), label)}
        baseline.append(row)
        record({"baseline": row})
    write_results()
    synthetic: list[dict] = []
    results["synthetic"] = synthetic
    final = trainees[-1]
    for seed in eval_seeds:
        if seed not in held:
            continue
        image, label = held[seed]
        image = image.astype(np.float32)
        row = {"seed": seed, "all": region_dice(seg(final.ema, image, True), label),
               "start": region_dice(seg(start, image, True), label)}
        synthetic.append(row)
        record({"synthetic": row})
    write_results()

    def mean(rows: list[dict], key: str) -> dict[str, float]:
        return {r: round(float(np.mean([row[key][r] for row in rows])), 4) for r in ("WT", "TC", "ET")} if rows else {}

    results["summary"] = {
        "cv_all": mean(cv, "all"), "cv_flair_t1c": mean(cv, "FLAIR+T1c"),
        "baseline_all": mean(baseline, "all"), "baseline_flair_t1c": mean(baseline, "FLAIR+T1c"),
        "synthetic_final": mean(synthetic, "all"), "synthetic_start": mean(synthetic, "start"),
        "total_minutes": round((time.time() - t0) / 60, 2)}
    record({"summary": results["summary"]})
    write_results()


if __name__ == "__main__":
    main()
