"""Brain extraction in the worker: deepbet's two networks (exported to ONNX by
`glioscope_training.brain_extraction_export`) run with onnxruntime, and a numpy copy of deepbet's
pipeline around them (no torch, no cc3d, no fill_voids). See docs/brain-extraction.md.

The model folder (`model_repository/glioscope_brainmask/`) holds `metadata.json` (pipeline constants,
thresholds, source, licence; `files` names the two networks) and `LICENSE-deepbet` (MIT: keep it with
the weights). The networks are Triton models beside it, `glioscope_brain_bbox/1/model.onnx` (coarse,
128³) and `glioscope_brain_mask/1/model.onnx` (fine: 256³ in deepbet, 192³ in the worker, FINE_SHAPE),
each with `config.pbtxt` and `configs/cpu.pbtxt`; the worker runs the same files with onnxruntime in its
own process, loaded once (`load_brain_extractor`), also when the tumour model is on Triton
(docs/brain-extraction.md says why).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

BRAIN_MODEL = "glioscope_brainmask"
# deepbet 1.0.2, deepbet/bet.py BrainExtraction.run_model / postprocess and utils.normalize
SMALL_SHAPE = (128, 128, 128)
SHAPE = (256, 256, 256)
BBOX_MARGIN = 0.1
BBOX_PLANE_FRACTION = 0.02
QUANTILES = (0.005, 0.995)
NORM_SCALE, NORM_SHIFT = 0.226, 0.449
THRESHOLD = 0.5
# How the platform uses the mask (metadata.json "use" may override): dilation before it cuts anything
# (deepbet's masks are tighter than BraTS's; tumour at the brain surface must survive) and the brain
# volumes accepted as a plausible extraction.
DILATE_MM = 2.5
BRAIN_ML_RANGE = (800.0, 2200.0)
# The fine pass the worker runs (metadata.json "use"."fine_shape" may override): 192³ instead of deepbet's
# 256³ (SHAPE, metadata.json "fine_shape"), about half the time. Measured on the real cases (bench/
# bench_brain_extraction.py --fine-shape, docs/performance.md "Raw study (issue 15)"): brain-mask Dice
# -0.002 on average, at most -0.005 (raw TCGA T1c 0.9709 -> 0.9672; no skull-stripped case falls under
# 0.97 that was over it at 256³); labelled tumour inside the mask 99.2-100 % (256³: 98.5-100 %).
FINE_SHAPE = (192, 192, 192)

Predict = Callable[[np.ndarray], np.ndarray]  # float32 [X, Y, Z] -> brain probability float32 [X, Y, Z]


def nearest_exact_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output index for torch's `F.interpolate(mode="nearest-exact")` with a
    given output size: floor((i + 0.5) * n_in / n_out), in float32 as torch's CPU kernel computes it."""
    scale = np.float32(n_in) / np.float32(n_out)
    idx = np.floor((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_nearest_exact(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    for axis, (n_in, n_out) in enumerate(zip(x.shape, shape)):
        if n_in != n_out:
            x = np.take(x, nearest_exact_index(n_in, n_out), axis=axis)
    return np.ascontiguousarray(x)


def normalize(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """deepbet.utils.normalize: rescale [low, high] to [0, 1], clip, standardise over the whole
    array (torch's unbiased std), then map to mean 0.449 and std 0.226 (ImageNet grey)."""
    y = np.subtract(x, np.float32(low), dtype=np.float32)
    y /= np.float32(high) - np.float32(low)
    np.maximum(y, np.float32(0), out=y)
    np.minimum(y, np.float32(1), out=y)
    flat = y.reshape(-1)
    mean = np.float32(flat.mean(dtype=np.float64))
    y -= mean
    chunk = 1 << 20
    square_sum = 0.0
    for i in range(0, flat.size, chunk):
        part = flat[i:i + chunk].astype(np.float64)
        square_sum += float(np.dot(part, part))
    y /= np.float32(np.sqrt(square_sum / max(1, flat.size - 1)))
    y *= np.float32(NORM_SCALE)  # in deepbet's order of operations, so that its mask is reproduced
    y += np.float32(NORM_SHIFT)
    return y


_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """cc3d.connected_components (26-connectivity, its default) + keep the largest label."""
    labels, n = ndimage.label(mask, structure=_CONNECTIVITY_26)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background components (6-connected) that do not touch the array's border become foreground:
    scipy.ndimage.binary_fill_holes / fill_voids.fill, in one labelling pass."""
    labels, n = ndimage.label(~mask)
    border = np.zeros(n + 1, dtype=bool)
    for axis in range(mask.ndim):
        for index in (0, -1):
            border[np.take(labels, index, axis=axis)] = True
    border[0] = False
    return ~border[labels]


def bbox_with_margin(mask_small: np.ndarray, shape: tuple[int, ...], margin: float = BBOX_MARGIN) -> tuple[slice, ...]:
    """deepbet's BrainExtraction.get_bbox_with_margin: planes where more than 2 % of the coarse mask
    is brain, centre and size scaled to the full grid, size × (1 + 2 margin), rounded half to even."""
    centre, size = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        r = np.flatnonzero(mask_small.mean(axis=others, dtype=np.float32) > BBOX_PLANE_FRACTION)
        if r.size == 0:
            raise ValueError("Not enough foreground to calculate bounding box")
        centre.append(np.float32(r.max() + 1 + r.min()) / np.float32(2))
        size.append(np.float32((r.max() + 1) - r.min()))
    scale = np.asarray(shape, dtype=np.float32) / np.asarray(mask_small.shape, dtype=np.float32)
    c = np.round(scale * np.asarray(centre, dtype=np.float32))
    s = np.round(np.float32(1 + 2 * margin) * (scale * np.asarray(size, dtype=np.float32)))
    box = [(int(ci - si / 2), int(ci + si / 2)) for ci, si in zip(c, s)]
    return tuple(slice(max(0, lo), min(n, hi), 1) for (lo, hi), n in zip(box, shape))


@dataclass
class BrainExtractionResult:
    mask: np.ndarray  # bool, on the input's (RAS-canonical) grid
    probability: np.ndarray  # float32, fine network's brain probability, 0 outside the box
    bbox: tuple[slice, ...]
    low: float
    high: float


def extract_brain_ras(x: np.ndarray, predict_bbox: Predict, predict_mask: Predict,
                      threshold: float = THRESHOLD, fine_shape: tuple[int, int, int] = SHAPE) -> BrainExtractionResult:
    """deepbet's run_model + postprocess on an array already in closest-canonical RAS order
    (nibabel.as_closest_canonical: axis permutation and flips only, no resampling). `fine_shape`
    other than deepbet's 256³ (multiples of 32) trades accuracy for speed: see docs/brain-extraction.md."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    x_small = resize_nearest_exact(x, SMALL_SHAPE)
    low, high = (float(q) for q in np.quantile(x_small, QUANTILES))
    prob_small = predict_bbox(normalize(x_small, low, high))
    mask_small = largest_component(prob_small > 0.5).astype(np.float32)
    bbox = bbox_with_margin(mask_small, x.shape)
    crop = x[bbox]
    prob_crop = predict_mask(normalize(resize_nearest_exact(crop, fine_shape), low, high))
    probability = np.zeros_like(x)
    probability[bbox] = resize_nearest_exact(prob_crop, crop.shape)
    mask = probability > threshold
    inside = largest_component(mask[bbox])
    mask[bbox] = fill_holes(inside)  # fill_voids.fill: holes not reaching the border
    return BrainExtractionResult(mask, probability, bbox, low, high)


def extract_brain(data: np.ndarray, affine: np.ndarray, predict_bbox: Predict, predict_mask: Predict,
                  threshold: float = THRESHOLD, fine_shape: tuple[int, int, int] = SHAPE) -> BrainExtractionResult:
    """Brain mask of a 3-D image on its own grid: reorient to closest canonical RAS as deepbet
    does, run the pipeline, reorient the mask (and probability) back."""
    import nibabel as nib

    ornt = nib.io_orientation(affine)
    to_ras = nib.orientations.ornt_transform(ornt, [[0, 1], [1, 1], [2, 1]])
    back = nib.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], ornt)
    res = extract_brain_ras(nib.apply_orientation(np.asarray(data), to_ras), predict_bbox, predict_mask, threshold,
                            fine_shape)
    res.mask = np.ascontiguousarray(nib.apply_orientation(res.mask, back))
    res.probability = np.ascontiguousarray(nib.apply_orientation(res.probability, back))
    return res


def ort_session_predictor(path: str | Path, threads: int = 2) -> Predict:
    """A predictor on one exported ONNX network (input `image`, output `brain`) with onnxruntime (CPU)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(0, int(threads))
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def predict(x: np.ndarray) -> np.ndarray:
        return sess.run(["brain"], {"image": np.ascontiguousarray(x, dtype=np.float32)[None, None]})[0][0, 0]

    return predict


def triton_predictor(url: str, model: str, timeout_s: float = 120.0) -> Predict:
    """A predictor on one of the brain networks served by Triton (gRPC; input `image`, output `brain`)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url.removeprefix("grpc://"))

    def predict(x: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(x, dtype=np.float32)[None, None]
        request = grpcclient.InferInput("image", list(image.shape), "FP32")
        request.set_data_from_numpy(image)
        result = client.infer(model, [request], outputs=[grpcclient.InferRequestedOutput("brain")],
                              client_timeout=timeout_s)
        return result.as_numpy("brain")[0, 0]  # type: ignore[no-any-return, index]

    return predict


def dilate_mm(mask: np.ndarray, affine: np.ndarray, mm: float) -> np.ndarray:
    """Binary dilation by `mm` millimetres on an anisotropic grid (an ellipsoidal structuring element
    from the voxel sizes; at least the mask itself along a thick axis)."""
    if mm <= 0 or not mask.any():
        return mask
    spacing = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    radius = np.floor(mm / spacing + 1e-6).astype(int)
    if not radius.any():
        return mask
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in radius], indexing="ij")
    ball = sum((g * s / mm) ** 2 for g, s in zip(grids, spacing)) <= 1.0 + 1e-6
    # crop to the mask's bounding box (plus the radius): the dilation costs that box only
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - radius, 0)
    hi = np.minimum(idx.max(axis=0) + radius + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out = np.zeros_like(mask, dtype=bool)
    out[box] = ndimage.binary_dilation(mask[box], structure=ball)
    return out


class BrainExtractor:
    """deepbet's pipeline on the two ONNX networks of one model folder, loaded once."""

    def __init__(self, folder: str | Path, threads: int = 0, triton_url: str | None = None) -> None:
        """`triton_url` (grpc://host:port): the two networks are Triton's models named in metadata.json's
        `triton_models` (the cluster); None: onnxruntime in this process on the same files (embedded)."""
        self.folder = Path(folder)
        self.metadata = json.loads((self.folder / "metadata.json").read_text())
        if self.metadata.get("pipeline") != "deepbet":
            raise ValueError(f"{self.folder}: metadata.json pipeline is not 'deepbet'")
        if triton_url:
            models = self.metadata["triton_models"]
            self.predict_bbox = triton_predictor(triton_url, models["bbox"])
            self.predict_mask = triton_predictor(triton_url, models["mask"])
        else:
            files = self.metadata["files"]
            self.predict_bbox = ort_session_predictor(self.folder / files["bbox"], threads)
            self.predict_mask = ort_session_predictor(self.folder / files["mask"], threads)
        use = self.metadata.get("use", {})
        self.dilate_mm = float(use.get("dilate_mm", DILATE_MM))
        self.brain_ml_range = tuple(float(v) for v in use.get("brain_ml_range", BRAIN_ML_RANGE))
        self.fine_shape = tuple(int(v) for v in use.get("fine_shape", FINE_SHAPE))

    def extract(self, data: np.ndarray, affine: np.ndarray) -> BrainExtractionResult:
        return extract_brain(data, affine, self.predict_bbox, self.predict_mask, fine_shape=self.fine_shape)


@functools.lru_cache(maxsize=4)
def load_brain_extractor(folder: str | Path, threads: int = 0, triton_url: str | None = None) -> BrainExtractor | None:
    """The folder's BrainExtractor, built once per process and folder; None when the folder (or its
    metadata.json) is missing, so that the pipeline keeps its behaviour without brain extraction."""
    folder = Path(folder)
    if not (folder / "metadata.json").is_file():
        return None
    return BrainExtractor(folder, threads, triton_url)
