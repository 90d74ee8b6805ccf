"""Where a tumour lies, from its voxels in MNI152 space: hemisphere and the lobes it involves.

One computation for both (issue 17: the report must not name the right hemisphere and the left lobe):
the worker maps every whole-tumour voxel centre into MNI152 millimetres with the study's registration to
the template (`glioscope_inference.atlas`), then

* hemisphere: the symmetric template's midline is x = 0 (RAS: x > 0 is the patient's right). Each side's
  share of the voxels decides: "bilateral" when the smaller side holds at least BILATERAL_FRACTION of
  them, "midline" in that case when the centroid lies within MIDLINE_MM of x = 0 as well; otherwise the
  side holding the larger share;
* lobes: each voxel is looked up in a coarse box atlas of the lobes in MNI152 coordinates (below); the
  lobes holding at least LOBE_MIN_FRACTION of the voxels are named, largest share first.

No lobe atlas image ships offline with a licence that allows redistribution here, so the lobes are boxes
built from the usual landmarks, with an error of the order of a centimetre near their boundaries (the
report says "approximate"):

* posterior fossa (cerebellum / brainstem): z < -20 and y < -40, or z < -30;
* deep grey matter (basal ganglia / thalamus): |x| < 28, -35 < y < 20, -10 < z < 20;
* insula: 28 <= |x| < 42, -25 < y < 20, -10 < z < 20;
* occipital lobe: y < -70;
* temporal lobe: z < 0 (and y < 25), or z < 10 with |x| > 45 and -70 < y < -10;
* parietal lobe: y < -25 (behind a coronal plane near the central sulcus);
* frontal lobe: everything else.
"""

from __future__ import annotations

import numpy as np

from glioscope_common.measurements import LobeShare, TumourLocation

__all__ = ["LOBES", "lobe_index", "locate_in_atlas", "BILATERAL_FRACTION", "LOBE_MIN_FRACTION", "MIDLINE_MM"]

LOBES = (
    "frontal lobe",
    "parietal lobe",
    "temporal lobe",
    "occipital lobe",
    "insula",
    "deep grey matter (basal ganglia/thalamus)",
    "posterior fossa (cerebellum/brainstem)",
)
BILATERAL_FRACTION = 0.10
LOBE_MIN_FRACTION = 0.10
MIDLINE_MM = 5.0
METHOD = (
    "registration of the study to the MNI ICBM152 2009a template (affine, SimpleITK), then each tumour voxel "
    "looked up in a coarse box atlas of the lobes; boundaries approximate to about a centimetre"
)


def lobe_index(points: np.ndarray) -> np.ndarray:
    """Index into LOBES for each MNI152 point (N x 3, mm); the rules of the module docstring, first match wins."""
    x, y, z = (np.asarray(points, dtype=float)[:, i] for i in range(3))
    ax = np.abs(x)
    rules = [
        (((z < -20) & (y < -40)) | (z < -30), 6),
        ((ax < 28) & (-35 < y) & (y < 20) & (-10 < z) & (z < 20), 5),
        ((28 <= ax) & (ax < 42) & (-25 < y) & (y < 20) & (-10 < z) & (z < 20), 4),
        (y < -70, 3),
        (((z < 0) & (y < 25)) | ((z < 10) & (ax > 45) & (-70 < y) & (y < -10)), 2),
        (y < -25, 1),
    ]
    out = np.zeros(len(x), dtype=np.int64)  # frontal: everything else
    decided = np.zeros(len(x), dtype=bool)
    for condition, index in rules:
        take = condition & ~decided
        out[take] = index
        decided |= take
    return out


def locate_in_atlas(points_mni: np.ndarray) -> TumourLocation:
    """Hemisphere and lobes of a tumour from its voxel centres in MNI152 mm (N x 3, N >= 1)."""
    points = np.asarray(points_mni, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        raise ValueError("no tumour voxels to locate")
    centroid = points.mean(axis=0)
    right = float(np.mean(points[:, 0] > 0))
    left = float(np.mean(points[:, 0] < 0))
    if min(left, right) >= BILATERAL_FRACTION:
        hemisphere = "midline" if abs(centroid[0]) < MIDLINE_MM else "bilateral"
    else:
        hemisphere = "right" if right > left else "left"
    shares = np.bincount(lobe_index(points), minlength=len(LOBES)) / len(points)
    order = np.argsort(-shares, kind="stable")
    lobes = [LobeShare(name=LOBES[i], fraction=round(float(shares[i]), 3)) for i in order if shares[i] >= LOBE_MIN_FRACTION]
    if not lobes:  # scattered over many lobes: name the largest share anyway
        lobes = [LobeShare(name=LOBES[int(order[0])], fraction=round(float(shares[order[0]]), 3))]
    return TumourLocation(
        hemisphere=hemisphere,  # type: ignore[arg-type]
        lobes=lobes,
        right_fraction=round(right, 3),
        left_fraction=round(left, 3),
        centroid_mni_mm=(round(float(centroid[0]), 1), round(float(centroid[1]), 1), round(float(centroid[2]), 1)),
        method=METHOD,
    )
