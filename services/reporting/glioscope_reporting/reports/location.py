"""Approximate anatomical location of the tumour centroid: hemisphere and lobe from a coarse box atlas.

The centroid comes in RAS millimetres of the model's grid. For registered data (BraTS/SRI24) that space is
close to MNI152; for unregistered data it is only the scanner's patient space, so the lobe is a guess.
No atlas image ships offline (nilearn downloads Harvard-Oxford), so this is a documented, deterministic
box approximation of the lobes in MNI152 coordinates, built from the usual landmarks:

* hemisphere: x < -5 mm left, x > +5 mm right, otherwise midline (the caller's voxel-based hemisphere wins
  when it says "bilateral");
* posterior fossa (cerebellum / brainstem): z < -20 and y < -40, or z < -30;
* deep grey matter (basal ganglia / thalamus): |x| < 28, -35 < y < 20, -10 < z < 20;
* insula: 28 <= |x| < 42, -25 < y < 20, -10 < z < 20;
* occipital lobe: y < -70;
* temporal lobe: z < 0 (and y < 25), or z < 10 with |x| > 45 and -70 < y < -10;
* parietal lobe: y < -25 (behind a coronal plane near the central sulcus);
* frontal lobe: everything else.

Its error is of the order of a centimetre near the boundaries; the report says "approximate location".
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

LOCATION_METHOD = (
    "approximate location: centroid lookup in a coarse MNI152 box atlas of the lobes "
    "(valid only for data registered to an MNI-like space; boundaries are approximate)"
)


class Location(BaseModel):
    hemisphere: Literal["left", "right", "bilateral", "midline", "none"]
    lobe: str
    centroid_ras_mm: tuple[float, float, float] | None
    method: str = LOCATION_METHOD


def lobe_of(x: float, y: float, z: float) -> str:
    ax = abs(x)
    if (z < -20 and y < -40) or z < -30:
        return "posterior fossa (cerebellum/brainstem)"
    if ax < 28 and -35 < y < 20 and -10 < z < 20:
        return "deep grey matter (basal ganglia/thalamus)"
    if 28 <= ax < 42 and -25 < y < 20 and -10 < z < 20:
        return "insula"
    if y < -70:
        return "occipital lobe"
    if (z < 0 and y < 25) or (z < 10 and ax > 45 and -70 < y < -10):
        return "temporal lobe"
    if y < -25:
        return "parietal lobe"
    return "frontal lobe"


def locate(centroid: tuple[float, float, float] | None, hemisphere: str) -> Location:
    if centroid is None:
        return Location(hemisphere="none" if hemisphere == "none" else hemisphere, lobe="undetermined", centroid_ras_mm=None)  # type: ignore[arg-type]
    x, y, z = centroid
    if hemisphere == "bilateral":
        side = "bilateral"
    elif x < -5:
        side = "left"
    elif x > 5:
        side = "right"
    else:
        side = "midline"
    return Location(hemisphere=side, lobe=lobe_of(x, y, z), centroid_ras_mm=(x, y, z))  # type: ignore[arg-type]


def location_phrase(location: Location) -> str:
    if location.lobe == "undetermined":
        return "location undetermined"
    side = {
        "left": "left",
        "right": "right",
        "bilateral": "bilateral",
        "midline": "midline",
    }.get(location.hemisphere, "")
    return f"{side} {location.lobe}".strip()
