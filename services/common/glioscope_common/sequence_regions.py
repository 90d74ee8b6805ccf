"""Which tumour regions a set of MR sequences supports: the one rule for the worker, the CLI, the gateway,
the report and the viewer (through the measurements' `sequences_used` / `regions_not_reported`).

The model (trained with sequence dropout) takes a missing sequence as an all-zero channel. Cross-validated
on real cases (docs/reporting.md, "Missing sequences"), a region is only as good as the sequences that show it:

- WT (whole tumour, oedema included) is reported only with FLAIR or T2 (without both: WT Dice ~0.4);
- TC and ET (tumour core, enhancing tumour, and so necrosis) only with T1c (without it: ET Dice ~0.05);
- a study needs T1c or FLAIR to be segmented at all: T1, T2 or T1 + T2 alone are refused.

The label map delivered (SEG, NIfTI) then claims only what is reported: without T1c labels 1, 2 and 3
become one "whole tumour" label (WHOLE_TUMOUR_LABEL); with T1c but neither FLAIR nor T2 the oedema
(label 2) becomes background and the core labels (1, 3) stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from glioscope_common.errors import UnprocessableInput
from glioscope_common.measurements import WHOLE_TUMOUR_LABEL
from glioscope_common.model_metadata import CodedConcept, LabelInfo
from glioscope_common.sequences import ROLES

__all__ = [
    "REGION_NAMES", "SequencePlan", "plan_sequences", "refusal_reason", "restrict_labels", "delivered_labels",
    "WHOLE_TUMOUR_SEGMENT",
]

REGION_NAMES = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}
NECROTIC_LABEL, OEDEMA_LABEL, ENHANCING_LABEL = 1, 2, 3

NEEDS_FOR_SEGMENTATION = "a post-contrast T1 (T1c) or a FLAIR"
WHOLE_TUMOUR_REASON = "there is neither FLAIR nor T2, which the whole tumour and the oedema need"
CORE_REASON = "there is no post-contrast T1 (T1c), which the tumour core, enhancement and necrosis need"

# One segment for labels 1-3 merged when there is no T1c: a neoplasm, not subdivided.
WHOLE_TUMOUR_SEGMENT = LabelInfo(
    value=WHOLE_TUMOUR_LABEL,
    name="Whole tumour (not subdivided: no T1c)",
    category=CodedConcept(value="49755003", scheme_designator="SCT", meaning="Morphologically Altered Structure"),
    type=CodedConcept(value="108369006", scheme_designator="SCT", meaning="Neoplasm"),
    color_rgb=(255, 150, 40),
)


@dataclass(frozen=True)
class SequencePlan:
    """What a study's sequences allow: the sequences used, the regions reported and why others are not."""

    used: tuple[str, ...]  # in ROLES order
    missing: tuple[str, ...]
    regions: tuple[str, ...]  # reported, among "WT", "TC", "ET"
    not_reported: Mapping[str, str] = field(default_factory=dict)  # region -> why not

    @property
    def reference(self) -> str:
        """The series whose grid the label map is delivered on: T1c, or FLAIR without a T1c."""
        return "T1c" if "T1c" in self.used else "FLAIR"

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """"Sequences used: T1c, FLAIR; not available: T1, T2; regions not reported: …" (one sentence)."""
        return summary_sentence(self.used, self.missing, self.not_reported)


def summary_sentence(used: Sequence[str], missing: Sequence[str], not_reported: Mapping[str, str]) -> str:
    text = f"Sequences used: {', '.join(used)}; not available: {', '.join(missing) or 'none'}"
    if not not_reported:
        return text + "; all regions reported."
    by_reason: dict[str, list[str]] = {}
    for region, why in not_reported.items():
        by_reason.setdefault(why, []).append(f"{REGION_NAMES[region]} ({region})")
    groups = "; ".join(f"{' and '.join(regions)}, because {why}" for why, regions in by_reason.items())
    return f"{text}; regions not reported: {groups}."


def refusal_reason(present: Iterable[str]) -> str | None:
    """Why a study with these sequences cannot be segmented, or None when it can."""
    have = set(present)
    if "T1c" in have or "FLAIR" in have:
        return None
    found = ", ".join(r for r in ROLES if r in have) or "none of T1, T1c, T2, FLAIR"
    return (f"cannot segment with {found} only: the model needs at least {NEEDS_FOR_SEGMENTATION} "
            "(T1 and T2 alone do not show the tumour reliably)")


def plan_sequences(present: Iterable[str]) -> SequencePlan:
    """The plan for a study with these sequences; UnprocessableInput when it cannot be segmented."""
    have = set(present)
    reason = refusal_reason(have)
    if reason is not None:
        raise UnprocessableInput(reason)
    not_reported: dict[str, str] = {}
    if not have & {"FLAIR", "T2"}:
        not_reported["WT"] = WHOLE_TUMOUR_REASON
    if "T1c" not in have:
        not_reported["TC"] = CORE_REASON
        not_reported["ET"] = CORE_REASON
    return SequencePlan(
        used=tuple(r for r in ROLES if r in have),
        missing=tuple(r for r in ROLES if r not in have),
        regions=tuple(r for r in REGION_NAMES if r not in not_reported),
        not_reported=not_reported,
    )


def restrict_labels(label_map: np.ndarray, plan: SequencePlan) -> np.ndarray:
    """The label map with only what `plan` reports (a new array when anything changes)."""
    if "TC" in plan.not_reported:  # no T1c: one whole-tumour label
        return np.where(label_map > 0, WHOLE_TUMOUR_LABEL, 0).astype(label_map.dtype)
    if "WT" in plan.not_reported:  # T1c without FLAIR or T2: no oedema
        return np.where(label_map == OEDEMA_LABEL, 0, label_map).astype(label_map.dtype)
    return label_map


def delivered_labels(model_labels: Sequence[LabelInfo], plan: SequencePlan) -> list[LabelInfo]:
    """The segments the SEG holds and the measurements list for `plan` (the model's labels when complete)."""
    if "TC" in plan.not_reported:
        return [WHOLE_TUMOUR_SEGMENT]
    if "WT" in plan.not_reported:
        return [label for label in model_labels if label.value != OEDEMA_LABEL]
    return list(model_labels)
