"""The tumour's location as the report states it: taken from the measurements, where the worker computed
hemisphere and lobes in one step in MNI152 space (glioscope_common.brain_atlas). Without an accepted
registration to the atlas the location is "not available", with the reason; nothing is guessed here."""

from __future__ import annotations

from pydantic import BaseModel

from glioscope_common.measurements import Measurements

LOCATION_METHOD = (
    "approximate location: the study registered to the MNI152 atlas, each tumour voxel looked up in a coarse "
    "box atlas of the lobes (boundaries approximate to about a centimetre)"
)
HEMISPHERE_TEXT = {
    "left": "left cerebral hemisphere",
    "right": "right cerebral hemisphere",
    "bilateral": "both cerebral hemispheres",
    "midline": "midline",
}


class Location(BaseModel):
    hemisphere: str  # left, right, bilateral, midline; "undetermined" when not available; "none" without tumour
    lobe: str  # the lobes involved, largest share first ("" when not available)
    lobes: list[tuple[str, float]] = []  # (lobe, share of the tumour's voxels)
    available: bool
    method: str = LOCATION_METHOD
    note: str = ""


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def locate(m: Measurements) -> Location:
    if m.location is None:
        return Location(hemisphere="none" if not m.tumour_detected else "undetermined", lobe="", available=False,
                        note=m.location_note or "the location is not available")
    lobes = [(lobe.name, lobe.fraction) for lobe in m.location.lobes]
    return Location(hemisphere=m.location.hemisphere, lobe=_join([name for name, _ in lobes]), lobes=lobes, available=True)


def location_phrase(location: Location) -> str:
    """e.g. "right frontal lobe", "left temporal and parietal lobes", "midline (deep grey matter ...)"."""
    if not location.available:
        return f"location not available ({location.note})"
    side = location.hemisphere
    if side in ("left", "right"):
        return f"{side} {location.lobe}"
    return f"{location.lobe}, {HEMISPHERE_TEXT[side]}"


def hemisphere_phrase(location: Location) -> str:
    """The lesion's side for the findings' first sentence ("" when not available)."""
    if not location.available:
        return ""
    return {
        "left": "in the left cerebral hemisphere",
        "right": "in the right cerebral hemisphere",
        "bilateral": "involving both cerebral hemispheres",
        "midline": "at the midline",
    }[location.hemisphere]
