"""Synthetic BraTS-like cases from the MNI152 2009 template shipped inside nilearn.

Deterministic by seed; needs numpy, scipy and nilearn only (no torch, no network).

Anatomy: MNI152 2009 T1 brain, grey and white matter probability maps (nilearn wheel);
CSF = brain - GM - WM; ventricles = CSF deeper than 12 mm inside the brain.
Per case: random affine + smooth elastic deformation; a tumour defined by noisy nested distance
fields (BraTS labels 1 necrotic/non-enhancing core, 2 oedema, 3 enhancing tumour) with mass effect;
non-tumour distractors labelled background (periventricular caps, choroid plexus, vessels, small
white-matter hyperintensities); four sequences with randomised tissue means, texture, bias field,
blur, thick-slice resolution loss and noise. Output is skull-stripped (zero outside the brain),
1 mm, RAS, intensities roughly 0..2000.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")
# Bump whenever a seed's case changes: cached cases of another version are stale (cache.read_case).
# 2: tumour intensities from wide per-case ranges (TISSUE_RANGES), fourth session.
GENERATOR_VERSION = 2

# Relative mean intensity per tissue and sequence (white matter T1 = 1).
# Columns: T1, T1c, T2, FLAIR
TISSUE_MEANS = {
    "wm": (1.00, 1.00, 0.50, 0.60),
    "gm": (0.72, 0.74, 0.72, 0.80),
    "csf": (0.28, 0.30, 1.60, 0.22),
    "oedema": (0.62, 0.66, 1.20, 1.45),
    "necrosis": (0.38, 0.42, 1.45, 0.85),
    "nonenh": (0.58, 0.60, 1.30, 1.20),
    "enhancing": (0.70, 1.65, 1.00, 1.20),
    "caps": (0.85, 0.85, 0.95, 1.20),  # periventricular caps / WM hyperintensities
    "plexus": (0.70, 1.45, 0.90, 0.95),
    "vessel": (0.80, 1.50, 0.45, 0.75),
}

# Where real tumours vary most, a per-case draw from a wide range replaces mean x U(0.8, 1.2):
# necrosis is FLAIR-dark (fluid, cysts) in some tumours and FLAIR-bright (protein, blood) in others,
# often brighter than the oedema around it, so only T1c (no enhancement inside an enhancing rim) and
# T1 tell it apart. A model trained on FLAIR-dark necrosis alone called a real ring-enhancing
# lesion's interior oedema (docs/model-card.md).
TISSUE_RANGES = {
    ("necrosis", "T1"): (0.25, 0.70),
    ("necrosis", "T1c"): (0.28, 0.75),  # overlaps oedema: the enclosing rim must tell them apart
    ("necrosis", "T2"): (1.20, 2.00),
    ("necrosis", "FLAIR"): (0.45, 1.75),
    ("nonenh", "FLAIR"): (0.90, 1.70),
    ("oedema", "T2"): (1.00, 1.60),
    ("oedema", "FLAIR"): (1.20, 1.90),
    ("enhancing", "T1c"): (1.30, 2.20),
}


@dataclass
class SyntheticCase:
    images: dict[str, np.ndarray]  # keys "T1","T1c","T2","FLAIR"; float32, same shape
    label: np.ndarray  # uint8 0..3, same shape
    affine: np.ndarray  # 4x4, voxel -> RAS mm, 1 mm spacing


@dataclass
class _Template:
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    depth: np.ndarray  # mm inside the brain
    vent_dist: np.ndarray  # mm to the nearest ventricle voxel (0 inside)
    inv_affine: np.ndarray
    affine: np.ndarray
    centre_mm: np.ndarray
    wm_points: np.ndarray  # (N,3) world mm of deep white matter voxels (tumour centres)
    gm_points: np.ndarray
    vent_points: np.ndarray


_CACHE_VERSION = 1


def _cache_file():
    import os
    from pathlib import Path

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glioscope"
    return root / f"mni152_synth_template_v{_CACHE_VERSION}.npz"


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    """Template maps, derived once and cached on disk (a few seconds saved per process)."""
    path = _cache_file()
    keys = ("t1", "gm", "wm", "mask", "depth", "vent_dist")
    try:
        with np.load(path) as z:
            arrays = {k: z[k].astype(np.float32) for k in keys}
            extra = {k: z[k] for k in ("affine", "centre_mm", "wm_points", "gm_points", "vent_points")}
    except (OSError, KeyError, ValueError):
        tpl = _build_template()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{np.random.default_rng().integers(1 << 30)}.tmp.npz")
            np.savez(tmp, **{k: getattr(tpl, k).astype(np.float16) for k in keys},
                     **{k: getattr(tpl, k) for k in ("affine", "centre_mm", "wm_points", "gm_points", "vent_points")})
            tmp.replace(path)
        except OSError:
            pass
        return tpl
    return _Template(**arrays, inv_affine=np.linalg.inv(extra["affine"]), **extra)


def _build_template() -> _Template:
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(), np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), np.float32)
    t1 = np.asarray(t1_img.get_fdata(), np.float32)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 0.05, iterations=2))
    gm = np.where(mask, np.clip(gm, 0, 1), 0).astype(np.float32)
    wm = np.where(mask, np.clip(wm, 0, 1), 0).astype(np.float32)
    depth = ndimage.distance_transform_edt(mask).astype(np.float32)
    csf = np.clip(mask - gm - wm, 0, 1)
    vent = (csf > 0.5) & (depth > 12)
    vent = ndimage.binary_opening(vent)
    lab, n = ndimage.label(vent)
    if n > 1:  # keep components of a reasonable size
        sizes = ndimage.sum(vent, lab, range(1, n + 1))
        vent = np.isin(lab, 1 + np.flatnonzero(sizes >= 200))
    vent_dist = ndimage.distance_transform_edt(~vent).astype(np.float32)
    aff = np.asarray(t1_img.affine, float)

    def world(mask_: np.ndarray) -> np.ndarray:
        ijk = np.argwhere(mask_)[::7]
        return (ijk @ aff[:3, :3].T + aff[:3, 3]).astype(np.float32)

    centre = world(mask).mean(axis=0)
    return _Template(
        t1=t1, gm=gm, wm=wm, mask=mask.astype(np.float32), depth=depth, vent_dist=vent_dist,
        inv_affine=np.linalg.inv(aff), affine=aff, centre_mm=centre,
        wm_points=world((wm > 0.6) & (depth > 8)), gm_points=world((gm > 0.5) & (depth > 6)),
        vent_points=world(vent & (depth > 16)),
    )


def _interp_matrix(n_out: int, n_coarse: int) -> np.ndarray:
    """(n_out, n_coarse) smooth (Gaussian-weighted) interpolation from a coarse lattice."""
    pos = np.linspace(0, n_coarse - 1, n_out)
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(n_coarse)[None, :]) / 0.6) ** 2)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Roughly unit-variance smooth noise on `shape` with features of about `scale` voxels."""
    cs = [max(2, int(np.ceil(s / scale)) + 2) for s in shape]
    out = rng.standard_normal(cs).astype(np.float32) * 3.0
    for axis, n in enumerate(shape):
        out = np.moveaxis(np.tensordot(_interp_matrix(n, cs[axis]), np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return np.ascontiguousarray(out)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a, b, c = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sample(vol: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    return ndimage.map_coordinates(vol, coords, order=order, mode="constant", cval=0.0, prefilter=False)


def _blobs(rng, y, n, centres, r_range, shape):
    """Union of `n` noisy balls at random `centres` (world mm), evaluated on template coords y."""
    out = np.zeros(shape, bool)
    if len(centres) == 0 or n == 0:
        return out
    for _ in range(n):
        c = centres[rng.integers(len(centres))] + rng.normal(0, 2, 3)
        r = rng.uniform(*r_range)
        # bounding box in output voxels (approximate: y is close to an affine of the grid)
        d2 = ((y[0] - c[0]) ** 2 + (y[1] - c[1]) ** 2 + (y[2] - c[2]) ** 2)
        out |= d2 < r * r
    return out


def synthesize(
    seed: int,
    shape: tuple[int, int, int] = (240, 240, 155),
    *,
    around_tumour: bool = False,
    require_all_labels: bool = True,
    offset_sd: float | None = None,
) -> SyntheticCase:
    """Make one case. `around_tumour=True` centres the grid near the tumour (training crops)."""
    rng = np.random.default_rng(seed)
    tpl = _template()
    shape = tuple(int(s) for s in shape)

    # ---- tumour parameters (template space) -------------------------------------------------
    kind_draw = rng.uniform()
    kind = "gbm" if kind_draw < 0.5 else ("nonenh" if kind_draw < 0.8 else "solid")
    if require_all_labels:
        kind = "gbm" if kind != "solid" else "solid"
    pts = tpl.wm_points if rng.uniform() < 0.75 else tpl.gm_points
    t_centre = pts[rng.integers(len(pts))].astype(float)
    r_core = rng.uniform(5, 20)
    r_wt = r_core * rng.uniform(1.25, 2.4)
    aniso = np.diag(rng.uniform(0.75, 1.3, 3)) @ _rotation(rng, 90)

    # ---- output grid and geometry ------------------------------------------------------------
    rot = _rotation(rng, 12)
    scale = rng.uniform(0.9, 1.1)
    lin = rot * scale  # output world (centred) -> template world (centred)
    if around_tumour:
        # output world == template-ish coordinates around the tumour, with a random offset
        out_centre = np.zeros(3)
        tpl_anchor = t_centre + rng.normal(0, shape[0] / 8 if offset_sd is None else offset_sd, 3)
    else:
        out_centre = np.zeros(3)
        tpl_anchor = tpl.centre_mm + rng.normal(0, 3, 3)
    affine = np.eye(4)
    affine[:3, 3] = out_centre - (np.array(shape) - 1) / 2.0
    # template coordinate of output voxel: y = lin @ (x_world - out_centre) + tpl_anchor
    ii = [np.arange(s, dtype=np.float32) for s in shape]
    grid = np.meshgrid(*ii, indexing="ij", sparse=True)
    x = [grid[a] + affine[a, 3] - out_centre[a] for a in range(3)]  # centred output world mm
    y = np.empty((3,) + shape, np.float32)
    for a in range(3):
        y[a] = lin[a, 0] * x[0] + lin[a, 1] * x[1] + lin[a, 2] * x[2] + tpl_anchor[a]
    del x
    amp = rng.uniform(0, 4)
    for a in range(3):  # elastic
        y[a] += amp * _smooth_noise(rng, shape, 32)

    # ---- tumour fields (defined on y, before mass effect) --------------------------------------
    d = y - t_centre.astype(np.float32)[:, None, None, None]
    dm = np.einsum("ab,b...->a...", aniso.astype(np.float32), d)
    rr = np.sqrt((dm**2).sum(0))
    del dm
    n_big = _smooth_noise(rng, shape, 10)
    n_small = _smooth_noise(rng, shape, 4)
    d_core = rr / r_core + 0.22 * n_big + 0.08 * n_small
    d_wt = np.sqrt((d**2).sum(0)) / r_wt + 0.3 * _smooth_noise(rng, shape, 14) + 0.06 * n_small

    # mass effect: output point at radius r reads tissue from a radius pulled towards the centre
    s = rng.uniform(0.0, 0.45) * min(1.0, r_core / 12)
    if s > 0:
        L = r_wt * 1.3
        r_euc = np.sqrt((d**2).sum(0))
        f = 1 - s * np.exp(-((r_euc / L) ** 2))
        y = d * f[None] + t_centre.astype(np.float32)[:, None, None, None]
        del r_euc, f
    del d

    ijk = np.einsum("ab,b...->a...", tpl.inv_affine[:3, :3].astype(np.float32), y)
    ijk += tpl.inv_affine[:3, 3].astype(np.float32)[:, None, None, None]
    mask = _sample(tpl.mask, ijk) > 0.5
    gm = _sample(tpl.gm, ijk)
    wm = _sample(tpl.wm, ijk)
    vdist = _sample(tpl.vent_dist, ijk)
    vdist[~mask] = 99
    t1tpl = _sample(tpl.t1, ijk)
    del ijk
    csf = np.clip(1 - gm - wm, 0, 1) * mask
    vent = (vdist < 0.5) & mask

    # ---- labels ---------------------------------------------------------------------------
    core = (d_core < 1) & mask & ~vent
    wt = (d_wt < 0.7 + 0.45 * wm) & mask & ~vent & (csf < 0.6)
    wt |= core
    label = np.zeros(shape, np.uint8)
    label[wt] = 2
    if kind == "gbm":
        nec_frac = rng.uniform(0.35, 0.8)
        label[core] = 3
        label[core & (d_core < nec_frac + 0.1 * n_small)] = 1
    elif kind == "nonenh":
        label[core] = 1
        if rng.uniform() < 0.4:  # patchy faint enhancement in part of the core
            label[core & (n_big > 1.0)] = 3
    else:
        label[core] = 3
        label[core & (d_core < rng.uniform(0.1, 0.4))] = 1
    if require_all_labels:
        present = set(np.unique(label[wt]).tolist())
        if not {1, 2, 3} <= present:
            return synthesize(seed + 7919 * 1000003, shape, around_tumour=around_tumour, offset_sd=offset_sd)
    del d_core, d_wt, n_big

    # ---- distractors (background) ---------------------------------------------------------
    caps = np.zeros(shape, bool)
    if rng.uniform() < 0.6:
        width = rng.uniform(2, 7)
        caps = (vdist > 0) & (vdist < width + 2.5 * _smooth_noise(rng, shape, 8)) & mask & (wm > 0.3)
    n_wmh = int(rng.integers(0, 12))
    wmh = _blobs(rng, y, n_wmh, tpl.wm_points, (1.5, 5), shape) & mask
    n_plx = int(rng.integers(1, 4))
    plexus = _blobs(rng, y, n_plx, tpl.vent_points, (2, 5), shape) & (vdist < 2) & mask
    va, vb = _smooth_noise(rng, shape, 12), _smooth_noise(rng, shape, 12)
    vw = rng.uniform(0.03, 0.07)
    vessels = (np.abs(va) < vw) & (np.abs(vb) < vw) & mask & ((gm + csf) > 0.4)
    vessels &= _smooth_noise(rng, shape, 30) > 0.0
    del va, vb, y
    distract_bg = label == 0

    # ---- intensities ----------------------------------------------------------------------
    def soft(m: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(m.astype(np.float32), 0.7)

    masks = {
        "oedema": soft(label == 2),
        "necrosis": soft(label == 1) if kind != "nonenh" else None,
        "nonenh": soft(label == 1) if kind == "nonenh" else None,
        "enhancing": soft(label == 3),
        "caps": soft((caps | wmh) & distract_bg),
        "plexus": soft(plexus & distract_bg),
        "vessel": soft(vessels & distract_bg),
    }
    texture = _smooth_noise(rng, shape, 2.5)
    tum_texture = _smooth_noise(rng, shape, 3)
    # Mild bias field (about +-20 % at one SD): clinical inputs are mostly bias-corrected, and a
    # stronger field taught the first model to call bright cortex oedema (docs/model-card.md).
    bias_amp = rng.uniform(0.0, 0.2)
    images: dict[str, np.ndarray] = {}
    brain_soft = soft(mask)
    for si, seq in enumerate(SEQUENCES):
        m = {k: v[si] * rng.uniform(0.8, 1.2) for k, v in TISSUE_MEANS.items()}
        for (tissue, range_seq), (lo, hi) in TISSUE_RANGES.items():
            if range_seq == seq:
                m[tissue] = rng.uniform(lo, hi)
        img = wm * m["wm"] + gm * m["gm"] + csf * m["csf"]
        if seq in ("T1", "T1c"):  # a touch of the template's own T1 contrast for realism
            img = img * (0.8 + 0.25 * np.clip(t1tpl / 0.75, 0, 1.5))
        img *= 1 + rng.uniform(0.01, 0.06) * texture
        for name, mk in masks.items():
            if mk is None:
                continue
            target = m[name] * (1 + rng.uniform(0.03, 0.15) * tum_texture)
            img = img * (1 - mk) + target * mk
        img *= np.exp(bias_amp * _smooth_noise(rng, shape, 60))
        sig = rng.uniform(0, 1.0)
        if sig > 0.2:
            img = ndimage.gaussian_filter(img, sig)
        if rng.uniform() < 0.35:  # thick slices along one axis
            ax = int(rng.integers(3))
            thick = rng.uniform(2, 5)
            sigmas = [0.0, 0.0, 0.0]
            sigmas[ax] = thick / 2.355
            img = ndimage.gaussian_filter(img, sigmas)
        img += rng.uniform(0.005, 0.04) * rng.standard_normal(shape).astype(np.float32)
        img = np.clip(img, 0, None) ** rng.uniform(0.85, 1.15)
        img *= brain_soft > 0.5
        images[seq] = (img * rng.uniform(500, 1200)).astype(np.float32)
    return SyntheticCase(images=images, label=label, affine=affine.astype(np.float64))


def generate_case(seed: int, shape: tuple[int, int, int] = (240, 240, 155)) -> SyntheticCase:
    """A full-brain BraTS-size case (1 mm, RAS, brain centred) with all three tumour labels."""
    return synthesize(seed, shape, around_tumour=False, require_all_labels=True)
