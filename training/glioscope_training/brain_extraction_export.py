"""Export deepbet's brain-extraction networks to ONNX model folders, with the preprocessing that
deepbet's own pipeline applies written down in metadata.json, and check the exported networks and the
worker's numpy + onnxruntime copy of that pipeline (glioscope_inference.brain_extraction: no torch,
no cc3d, no fill_voids) against deepbet's own.

deepbet (Fisch et al. 2024, Computers in Biology and Medicine 179:108845; PyPI `deepbet`, MIT
licence) ships two TorchScript networks inside its wheel (`<site-packages>/data/models/`): a coarse
"bbox" LinkNet3d run on the whole volume resized to 128³, whose mask gives a bounding box, and a
fine LinkNet3d run on that box resized to 256³. Both are fully convolutional (instance norm, no
fixed-size layer); every spatial size must be a multiple of 32.

    pip install torch==2.13.0 && pip install deepbet onnx onnxruntime   # export only
    PYTHONPATH=training:services/inference python -m glioscope_training.brain_extraction_export \
        --out /tmp/bet-models [--bundle model_repository/glioscope_brainmask] [--check IMAGE.nii.gz]

writes

    <out>/glioscope_brain_bbox/1/model.onnx   config.pbtxt  configs/cpu.pbtxt  metadata.json
    <out>/glioscope_brain_mask/1/model.onnx   config.pbtxt  configs/cpu.pbtxt  metadata.json
    (+ LICENSE-deepbet in both); with --bundle DIR also the worker's folder (bundle()):
    DIR/metadata.json  LICENSE-deepbet, and the two Triton model folders copied beside DIR (DIR/../glioscope_brain_bbox/, ...)

Each ONNX graph takes `image` float32 [1, 1, X, Y, Z] and gives `brain` float32 [1, 1, X, Y, Z], the
softmax probability of the brain class (deepbet's output channel 1; channel 0 is 1 - brain and is
left out of the graph to halve the output). Every InstanceNormalization is rewritten as a two-pass
mean/variance taken one axis at a time (`decompose_instance_norm`): onnxruntime's own kernel is up
to 0.1 off torch in brain probability on real images, the rewritten graph 8e-5. `--check IMAGE`
compares, on a real image, onnxruntime with torch (max probability difference at each network's
actual input) and this module's pipeline with deepbet's own (voxels where the masks differ).
See docs/brain-extraction.md for the measurements and the licence (MIT: keep LICENSE-deepbet with
the weights).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
from glioscope_inference.brain_extraction import (  # noqa: F401  (re-exported for the bench and tests)
    BBOX_MARGIN,
    BBOX_PLANE_FRACTION,
    BRAIN_MODEL,
    BRAIN_ML_RANGE,
    DILATE_MM,
    NORM_SCALE,
    NORM_SHIFT,
    QUANTILES,
    SHAPE,
    SMALL_SHAPE,
    THRESHOLD,
    BrainExtractionResult,
    Predict,
    bbox_with_margin,
    extract_brain,
    extract_brain_ras,
    fill_holes,
    largest_component,
    nearest_exact_index,
    normalize,
    ort_session_predictor,
    resize_nearest_exact,
)
from scipy import ndimage

OPSET = 17
TOLERANCE = 1e-3  # max |brain probability difference| allowed between onnxruntime and torch (3e-5 seen)
BBOX_MODEL = "glioscope_brain_bbox"
MASK_MODEL = "glioscope_brain_mask"

CITATION = (
    "Fisch L, Zumdick S, Barkhau C, Emden D, Ernsting J, Leenings R, Sarink K, Winter NR, Risse B, "
    "Dannlowski U, Hahn T. deepbet: Fast brain extraction of T1-weighted MRI using Convolutional Neural "
    "Networks. Computers in Biology and Medicine 179 (2024) 108845. doi:10.1016/j.compbiomed.2024.108845"
)

# --------------------------------------------------------------------------------------------- pipeline
# The numpy pipeline lives in the worker (glioscope_inference.brain_extraction; run the export with
# PYTHONPATH=training:services/inference in the export virtualenv).
def ort_predictors(model_root: str | Path, threads: int = 2) -> tuple[Predict, Predict]:
    """(bbox, mask) predictors on the two exported folders under model_root (onnxruntime, CPU)."""
    root = Path(model_root)
    return (ort_session_predictor(root / BBOX_MODEL / "1" / "model.onnx", threads),
            ort_session_predictor(root / MASK_MODEL / "1" / "model.onnx", threads))


# ----------------------------------------------------------------------------------------------- export
def deepbet_files() -> dict[str, Path]:
    """The installed deepbet wheel's weights and licence (found through its RECORD, since the wheel
    puts the weights in a top-level `data/models/` folder of site-packages)."""
    dist = importlib_metadata.distribution("deepbet")
    files = {}
    for f in dist.files or []:
        name = str(f).replace("\\", "/")
        if name.endswith("data/models/bbox_model.pt"):
            files["bbox"] = Path(f.locate())
        elif name.endswith("data/models/model.pt"):
            files["mask"] = Path(f.locate())
        elif name.endswith(".dist-info/LICENSE"):
            files["licence"] = Path(f.locate())
    missing = {"bbox", "mask", "licence"} - files.keys()
    if missing:
        raise SystemExit(f"deepbet {dist.version} lacks {sorted(missing)} in its RECORD")
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decompose_instance_norm(model):
    """Replace every InstanceNormalization node by a two-pass mean / variance whose means are taken
    one axis at a time (z, then y, then x), then sqrt and divide.

    onnxruntime's InstanceNormalization (and a plain ReduceMean over all three axes) sums the
    2 million voxels of a 128³ feature map in float32 and loses digits: after the fine network's
    first layer on the real BraTS case its output is 0.0136 off the float64 result (torch float32:
    2e-5), and the fine network's brain probability ends up to 0.097 off torch's. Means of at most
    a few hundred values per step keep float32 within ~1e-5."""
    from onnx import TensorProto, helper, numpy_helper

    def axis_by_axis_mean(x: str, y: str) -> list:
        return [
            helper.make_node("ReduceMean", [x], [y + "_z"], axes=[4], keepdims=1),
            helper.make_node("ReduceMean", [y + "_z"], [y + "_yz"], axes=[3], keepdims=1),
            helper.make_node("ReduceMean", [y + "_yz"], [y], axes=[2], keepdims=1),
        ]

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    nodes = []
    added = []
    for k, n in enumerate(graph.node):
        if n.op_type != "InstanceNormalization":
            nodes.append(n)
            continue
        x, scale, bias = n.input
        y = n.output[0]
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        p = f"in{k}_"
        added.append(helper.make_tensor(p + "eps", TensorProto.FLOAT, [], [eps]))
        nodes += [
            *axis_by_axis_mean(x, p + "mean"),
            helper.make_node("Sub", [x, p + "mean"], [p + "centred"]),
            helper.make_node("Mul", [p + "centred", p + "centred"], [p + "square"]),
            *axis_by_axis_mean(p + "square", p + "var"),
            helper.make_node("Add", [p + "var", p + "eps"], [p + "var_eps"]),
            helper.make_node("Sqrt", [p + "var_eps"], [p + "std"]),
        ]
        plain = (scale in consts and bias in consts and np.all(consts[scale] == 1) and np.all(consts[bias] == 0))
        if plain:
            nodes.append(helper.make_node("Div", [p + "centred", p + "std"], [y]))
        else:
            added.append(helper.make_tensor(p + "shape", TensorProto.INT64, [5], [1, -1, 1, 1, 1]))
            nodes += [
                helper.make_node("Div", [p + "centred", p + "std"], [p + "norm"]),
                helper.make_node("Reshape", [scale, p + "shape"], [p + "scale"]),
                helper.make_node("Reshape", [bias, p + "shape"], [p + "bias"]),
                helper.make_node("Mul", [p + "norm", p + "scale"], [p + "scaled"]),
                helper.make_node("Add", [p + "scaled", p + "bias"], [y]),
            ]
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model


def export_network(pt_file: Path, out: Path, sample_shape: tuple[int, int, int], two_pass_norm: bool = True):
    """TorchScript network -> ONNX, then the graph's 2-channel softmax is sliced to its brain channel
    (a traced ScriptModule cannot be wrapped in a Python module for export, so the slice is added to
    the ONNX graph)."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    net = torch.jit.load(str(pt_file), map_location="cpu").eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {2: "x", 3: "y", 4: "z"}
    raw = out.with_suffix(".two-class.onnx")
    with torch.no_grad():
        torch.onnx.export(
            net, (torch.zeros(1, 1, *sample_shape),), str(raw), input_names=["image"],
            output_names=["softmax"], opset_version=OPSET, dynamic_axes={"image": axes, "softmax": axes},
            do_constant_folding=True, dynamo=False,
        )
    model = onnx.load(str(raw))
    raw.unlink()
    graph = model.graph
    graph.initializer.extend([
        helper.make_tensor(name, TensorProto.INT64, [1], [value])
        for name, value in (("brain_start", 1), ("brain_end", 2), ("brain_axis", 1))
    ])
    graph.node.append(helper.make_node("Slice", ["softmax", "brain_start", "brain_end", "brain_axis"], ["brain"],
                                       name="brain_channel"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("brain", TensorProto.FLOAT, [1, 1, "x", "y", "z"]))
    if two_pass_norm:
        model = decompose_instance_norm(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return net


def check_network(net, onnx_path: Path, shape: tuple[int, int, int], seed: int = 0) -> float:
    """Max |brain probability difference| between onnxruntime and torch on a smooth random image."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(seed)
    x = ndimage.zoom(rng.standard_normal(tuple(max(2, n // 16) for n in shape)), 16, order=1)[: shape[0], : shape[1], : shape[2]]
    x = (NORM_SCALE * (x - x.mean()) / x.std() + NORM_SHIFT).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)[None, None])[0, 1].numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["brain"], {"image": x[None, None]})[0][0, 0]
    return float(np.max(np.abs(ref - got)))


def triton_config(name: str, shape: tuple[int, int, int], kind: str) -> str:
    dims = "1, -1, -1, -1"
    return f"""# deepbet {'coarse (bounding-box)' if name == BBOX_MODEL else 'fine'} brain-extraction network (ONNX, opset 17), exported by
# glioscope_training.brain_extraction_export. Input: deepbet-normalised T1w volume, closest-canonical RAS,
# resized to {'x'.join(map(str, shape))} (nearest-exact; deepbet's size) or another size whose sides are
# multiples of 32. Output: brain probability. See metadata.json.
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [
  {{
    name: "image"
    data_type: TYPE_FP32
    dims: [ 1, {dims} ]
  }}
]
output [
  {{
    name: "brain"
    data_type: TYPE_FP32
    dims: [ 1, {dims} ]
  }}
]
instance_group [
  {{
    count: 1
    kind: {kind}
  }}
]
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""


def metadata(version: str, files: dict[str, Path], role: str, checks: dict[str, float]) -> dict:
    return {
        "name": BBOX_MODEL if role == "bbox" else MASK_MODEL,
        "role": role,
        "pipeline": "deepbet",
        "pipeline_models": {"bbox": BBOX_MODEL, "mask": MASK_MODEL},
        "version": f"deepbet-{version}",
        "onnx_file": "1/model.onnx",
        "input_name": "image",
        "output_name": "brain",
        "input_shape": [1, 1, *(SMALL_SHAPE if role == "bbox" else SHAPE)],
        "spatial_size_multiple": 32,
        "onnx_vs_torch_max_abs_diff": checks,
        "intended_input": "one 3-D T1-weighted MRI (deepbet was trained and validated on T1w of healthy adults; "
                          "see docs/brain-extraction.md for T1c and other contrasts)",
        "preprocessing": {
            "orientation": "closest canonical RAS by axis permutation/flips only (nibabel.as_closest_canonical), "
                           "no resampling; the mask is reoriented back to the input grid",
            "spacing": "ignored: the voxel grid is resized to a fixed shape whatever the spacing",
            "nan_to_num": True,
            "coarse": {
                "resize": list(SMALL_SHAPE),
                "interpolation": "nearest-exact (torch F.interpolate): src = floor((i + 0.5) * n_in / n_out)",
            },
            "intensity_reference": {
                "low": f"quantile {QUANTILES[0]} (linear) of the 128^3 resized volume",
                "high": f"quantile {QUANTILES[1]} (linear) of the 128^3 resized volume",
                "note": "the same low/high are used for the fine pass",
            },
            "normalisation": {
                "steps": ["x = clip((x - low) / (high - low), 0, 1)",
                          "x = (x - mean(x)) / std(x)  over the whole network input, std unbiased (n - 1)",
                          f"x = {NORM_SCALE} * x + {NORM_SHIFT}"],
                "scale": NORM_SCALE, "shift": NORM_SHIFT, "quantiles": list(QUANTILES),
            },
            "bbox": {
                "coarse_threshold": 0.5,
                "coarse_postprocess": "largest 26-connected component",
                "plane_fraction": BBOX_PLANE_FRACTION,
                "rule": "per axis, planes of the coarse mask whose mean > plane_fraction; centre and size scaled by "
                        "full_shape / 128; size *= 1 + 2 * margin; both rounded half to even; "
                        "box = [int(c - s/2), int(c + s/2)) clipped to the image",
                "margin": BBOX_MARGIN,
            },
            "fine": {
                "crop": "the bbox on the full-resolution RAS array",
                "resize": list(SHAPE),
                "interpolation": "nearest-exact",
                "back_to_crop": "nearest-exact from 256^3 to the crop shape, 0 outside the crop",
            },
        },
        "postprocessing": {
            "threshold": THRESHOLD,
            "inside_bbox": ["largest 26-connected component", "fill holes (fill_voids.fill)"],
            "dilate_voxels": 0,
        },
        "source": {
            "package": f"deepbet=={version} (PyPI)",
            "repository": "github.com/wwu-mmll/deepbet",
            "weights_file": files[role].name,
            "weights_sha256": _sha256(files[role]),
            "paper": CITATION,
        },
        "licence": {
            "spdx": "MIT",
            "copyright": "Copyright (c) 2023 Medical Machine Learning Lab - University of Münster",
            "file": "LICENSE-deepbet",
            "conditions": "keep the copyright and permission notice with the weights (this folder's LICENSE-deepbet)",
        },
        "intended_use": "research use only, not for clinical decisions",
    }


def export_all(out_root: str | Path, two_pass_norm: bool = True) -> dict[str, float]:
    files = deepbet_files()
    version = importlib_metadata.version("deepbet")
    out_root = Path(out_root)
    checks: dict[str, float] = {}
    for role, model_name, shape in (("bbox", BBOX_MODEL, SMALL_SHAPE), ("mask", MASK_MODEL, SHAPE)):
        folder = out_root / model_name
        onnx_path = folder / "1" / "model.onnx"
        net = export_network(files[role], onnx_path, shape, two_pass_norm)
        checks[f"{role}_{'x'.join(map(str, shape))}"] = check_network(net, onnx_path, shape)
        (folder / "configs").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(triton_config(model_name, shape, "KIND_GPU"))
        (folder / "configs" / "cpu.pbtxt").write_text(triton_config(model_name, shape, "KIND_CPU"))
        shutil.copyfile(files["licence"], folder / "LICENSE-deepbet")
    for role, model_name in (("bbox", BBOX_MODEL), ("mask", MASK_MODEL)):
        meta = metadata(version, files, role, checks)
        meta["instance_norm"] = "two-pass (decomposed)" if two_pass_norm else "onnx InstanceNormalization"
        (out_root / model_name / "metadata.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return checks


def bundle(out_root: str | Path, dest: str | Path) -> Path:
    """The worker's model folder (`model_repository/glioscope_brainmask/`: LICENSE-deepbet and one
    metadata.json with the pipeline constants, both networks' sources, and how the platform uses the mask:
    dilation, plausible brain volume) and, beside it, the two networks as Triton models
    (`glioscope_brain_bbox/`, `glioscope_brain_mask/`: 1/model.onnx, config.pbtxt, configs/cpu.pbtxt,
    LICENSE-deepbet). metadata.json's `files` point into those folders, so the worker's onnxruntime and
    Triton read the same ONNX files."""
    out_root, dest = Path(out_root), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    metas = {}
    files = {}
    for role, model_name in (("bbox", BBOX_MODEL), ("mask", MASK_MODEL)):
        served = dest.parent / model_name
        (served / "1").mkdir(parents=True, exist_ok=True)
        (served / "configs").mkdir(exist_ok=True)
        for item in ("1/model.onnx", "config.pbtxt", "configs/cpu.pbtxt", "LICENSE-deepbet"):
            shutil.copyfile(out_root / model_name / item, served / item)
        files[role] = f"../{model_name}/1/model.onnx"
        metas[role] = json.loads((out_root / model_name / "metadata.json").read_text())
    shutil.copyfile(out_root / MASK_MODEL / "LICENSE-deepbet", dest / "LICENSE-deepbet")
    mask = metas["mask"]
    meta = {
        "name": BRAIN_MODEL,
        "pipeline": "deepbet",
        "version": mask["version"],
        "files": files,
        "triton_models": {"bbox": BBOX_MODEL, "mask": MASK_MODEL},
        "files_sha256": {role: _sha256(dest / files[role]) for role in ("bbox", "mask")},
        "input_name": mask["input_name"],
        "output_name": mask["output_name"],
        "input_shapes": {role: metas[role]["input_shape"] for role in ("bbox", "mask")},
        "fine_shape": list(SHAPE),
        "spatial_size_multiple": mask["spatial_size_multiple"],
        "instance_norm": mask.get("instance_norm"),
        "onnx_vs_torch_max_abs_diff": mask["onnx_vs_torch_max_abs_diff"],
        "intended_input": mask["intended_input"],
        "preprocessing": mask["preprocessing"],
        "postprocessing": mask["postprocessing"],
        "use": {
            "sequence": "T1c (the reference), on its native grid, only when the study is not skull-stripped",
            "dilate_mm": DILATE_MM,
            "brain_ml_range": list(BRAIN_ML_RANGE),
            "outside_mask": "every channel set to 0 on the model grid before normalisation; labels removed",
        },
        "serving": "onnxruntime in the worker process (also when the tumour model is on Triton); the two networks "
                   "are also Triton models (glioscope_brain_bbox, glioscope_brain_mask: config.pbtxt, configs/cpu.pbtxt)",
        "source": {**{k: v for k, v in mask["source"].items() if k not in ("weights_file", "weights_sha256")},
                   "weights": {role: {"file": metas[role]["source"]["weights_file"],
                                      "sha256": metas[role]["source"]["weights_sha256"]} for role in ("bbox", "mask")}},
        "licence": mask["licence"],
        "intended_use": mask["intended_use"],
    }
    (dest / "metadata.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return dest


def torch_predictors(threads: int = 2) -> tuple[Predict, Predict]:
    """(bbox, mask) predictors on deepbet's own TorchScript networks (needs torch and deepbet)."""
    import torch

    torch.set_num_threads(threads)
    files = deepbet_files()

    def make(path: Path) -> Predict:
        net = torch.jit.load(str(path), map_location="cpu").eval()

        def predict(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None])[0, 1].numpy()

        return predict

    return make(files["bbox"]), make(files["mask"])


def torch_reference_mask(path: str | Path, threads: int = 2) -> np.ndarray:
    """deepbet's own mask (its BrainExtraction, torch) of a NIfTI file, on the file's grid."""
    import torch
    from deepbet import BrainExtraction

    torch.set_num_threads(threads)
    _, mask, _ = BrainExtraction(no_gpu=True).run(str(path))
    return np.asanyarray(mask.dataobj) > 0


def check_image(path: str | Path, model_root: str | Path, threads: int = 2) -> dict[str, float]:
    """On a real image: (1) max |brain probability| difference between onnxruntime and torch on the
    very inputs the ONNX pipeline gives each network; (2) voxels where this module's pipeline run
    with deepbet's torch networks differs from deepbet's own BrainExtraction (is the pipeline
    reproduced?); (3) voxels where the ONNX pipeline differs from deepbet."""
    import nibabel as nib

    img = nib.load(str(path))
    data = img.get_fdata(dtype=np.float32)
    data = data[..., 0] if data.ndim == 4 else data
    ort_bbox, ort_mask = ort_predictors(model_root, threads)
    th_bbox, th_mask = torch_predictors(threads)
    diffs = {"bbox": 0.0, "mask": 0.0}

    def compared(name: str, ort_fn: Predict, th_fn: Predict) -> Predict:
        def predict(x: np.ndarray) -> np.ndarray:
            got = ort_fn(x)
            diffs[name] = max(diffs[name], float(np.max(np.abs(got - th_fn(x)))))
            return got

        return predict

    ours = extract_brain(data, img.affine, compared("bbox", ort_bbox, th_bbox), compared("mask", ort_mask, th_mask)).mask
    ours_torch = extract_brain(data, img.affine, th_bbox, th_mask).mask
    ref = torch_reference_mask(path, threads)
    return {
        "bbox_max_abs_diff": diffs["bbox"],
        "mask_max_abs_diff": diffs["mask"],
        "pipeline_torch_vs_deepbet_voxels": int((ours_torch != ref).sum()),
        "onnx_vs_deepbet_voxels": int((ours != ref).sum()),
        "onnx_vs_deepbet_dice": float(2 * (ours & ref).sum() / max(1, ours.sum() + ref.sum())),
        "brain_voxels": int(ref.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder that receives the two model folders")
    ap.add_argument("--check", action="append", default=[],
                    help="a NIfTI image: compare deepbet (torch) with the exported pipeline (onnxruntime)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx-instance-norm", action="store_true",
                    help="keep ONNX InstanceNormalization nodes (faster, but less exact in onnxruntime)")
    ap.add_argument("--bundle", default=None,
                    help="also write the worker's folder here (model_repository/glioscope_brainmask) and the two "
                         "Triton model folders beside it")
    args = ap.parse_args(argv)
    checks = export_all(args.out, two_pass_norm=not args.onnx_instance_norm)
    if args.bundle:
        print(f"worker model folder: {bundle(args.out, args.bundle)}")
    for name in (BBOX_MODEL, MASK_MODEL):
        f = Path(args.out) / name / "1" / "model.onnx"
        print(f"exported {f} ({f.stat().st_size / 1e6:.2f} MB)")
    print("onnxruntime vs torch, max |brain probability diff| on a random image: "
          + ", ".join(f"{k} {v:.2e}" for k, v in checks.items()))
    if max(checks.values()) > TOLERANCE:
        raise SystemExit(f"onnxruntime differs from torch by more than {TOLERANCE}")
    failed = []
    for path in args.check:
        r = check_image(path, args.out, args.threads)
        print(f"{path}: onnxruntime vs torch max |brain probability diff| bbox {r['bbox_max_abs_diff']:.2e}, "
              f"mask {r['mask_max_abs_diff']:.2e}; this pipeline with torch vs deepbet: "
              f"{r['pipeline_torch_vs_deepbet_voxels']} voxels differ; with onnxruntime vs deepbet: "
              f"{r['onnx_vs_deepbet_voxels']} of {r['brain_voxels']} brain voxels differ (Dice {r['onnx_vs_deepbet_dice']:.5f})")
        if max(r["bbox_max_abs_diff"], r["mask_max_abs_diff"]) > TOLERANCE:
            failed.append(str(path))
    if failed:
        raise SystemExit(f"onnxruntime differs from torch by more than {TOLERANCE} on {failed}")


if __name__ == "__main__":
    main()
