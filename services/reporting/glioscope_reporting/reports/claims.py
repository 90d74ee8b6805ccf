"""What the report may claim from the measurements: each rule, its threshold and its source, in one place.

The draft (draft.py), the structured fields (analysis.py) and the PDF only say what these rules allow.
docs/report-rules.md lists the same rules for clinicians and reviewers.

| rule | claim | needs | source |
|---|---|---|---|
| R1 | a tumour is detected | whole tumour >= 0.5 mL | RANO's smallest measurable lesion is 10 x 10 mm (Wen et al., J Clin Oncol 2010;28:1963); a 10 mm sphere is 0.52 mL. Less is reported as "no tumour detected". |
| R2 | contrast enhancement is present | enhancing tumour >= 0.5 mL | the same RANO size: enhancing specks under it are called "no measurable enhancement", not enhancement. |
| R3 | necrosis is present | label 1 >= 0.5 mL, R2, and enhancement is at least 10 % of the tumour core | BraTS label 1 is "necrotic and non-enhancing tumour core" (Menze et al., IEEE TMI 2015; Bakas et al., Sci Data 2017): without enhancing tumour around it, it is called non-enhancing tumour core, not necrosis. |
| R4 | rim enhancement around a necrotic core | R3, enhancing tumour >= 1 mL and enhancing / necrotic volume <= 3 | glioblastoma's typical pattern, an enhancing rim around central necrosis. Project rule on the BraTS labels: necrosis must be at least a quarter of the core (ratio <= 3); otherwise the enhancement is called solid. |
| R5 | "imaging features compatible with a high-grade glioma" | R2, R3 and a reliable result (R6) | contrast enhancement with necrosis is the imaging hallmark of high-grade glioma (e.g. WHO CNS5, Louis et al., Neuro Oncol 2021; RANO). Otherwise no grade is suggested. |
| R6 | the result is reliable | no input warning that the model may have labelled tissue outside the brain (images not skull-stripped and no brain extraction), and the model's own quality estimate not flagged (glioscope_inference.quality, threshold in docs/model-card.md) | the model was trained on skull-stripped images; outside that domain, or where it is unsure of its own answer, no diagnosis is drafted and the report says "result not reliable". |
| R7 | a location (hemisphere, lobes) | an accepted registration to the MNI152 atlas (glioscope_common.brain_atlas) | otherwise "location not available" with the reason; no side is guessed from scanner coordinates. |
| R8 | any statement on enhancement, necrosis, the tumour core or a grade | a post-contrast T1 (T1c) among the sequences used | without T1c the model's enhancing-tumour Dice is ~0.05 and its core Dice ~0.65 (cross-validated, sequence dropout): "not assessed", never "absent" (glioscope_common.sequence_regions). |
| R9 | any statement on the whole tumour or the oedema | FLAIR or T2 among the sequences used | with T1c alone the whole-tumour Dice is ~0.4: the tumour is detected (R1) and measured on its core instead. |
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.formatting import ENHANCING_LABEL, NECROTIC_LABEL, label_volume, region, reported

TUMOUR_MIN_ML = 0.5  # R1
ENHANCEMENT_MIN_ML = 0.5  # R2
NECROSIS_MIN_ML = 0.5  # R3
NECROSIS_MIN_ENHANCING_SHARE_OF_CORE = 0.10  # R3
RIM_MIN_ENHANCING_ML = 1.0  # R4
RIM_MAX_RATIO = 3.0  # R4: enhancing / necrotic volume
# R6: the worker's warning for images that are not skull-stripped (pipeline.input_warnings) starts so.
UNRELIABLE_WARNING_PREFIX = "The images do not look skull-stripped"

EnhancementPattern = Literal["none", "rim", "solid", "not_assessed"]


class Claims(BaseModel):
    tumour: bool
    enhancement: bool
    necrosis: bool
    non_enhancing_core: bool  # label 1 present (>= R3's volume) but not called necrosis
    pattern: EnhancementPattern
    high_grade_features: bool
    reliable: bool
    unreliable_reasons: list[str]
    location_available: bool
    enhancement_assessed: bool  # R8: T1c used (tumour core and enhancing tumour reported)
    whole_tumour_assessed: bool  # R9: FLAIR or T2 used (whole tumour and oedema reported)


def unreliable_reasons(m: Measurements) -> list[str]:
    reasons = [w for w in m.input_warnings if w.startswith(UNRELIABLE_WARNING_PREFIX)]
    if m.quality is not None and m.quality.review and m.quality.overall is not None:
        reasons.append(f"The model's own confidence in its segmentation is low (quality estimate "
                       f"{m.quality.overall:.2f}, below {m.quality.review_below:.2f}): the segmentation may be wrong.")
    return reasons


def assess(m: Measurements) -> Claims:
    whole_tumour_assessed = reported(m, "WT")  # R9
    enhancement_assessed = reported(m, "TC") and reported(m, "ET")  # R8
    tumour = (region(m, "WT") if whole_tumour_assessed else region(m, "TC")) >= TUMOUR_MIN_ML  # R1 (on the core: R9)
    reasons = unreliable_reasons(m)
    if not enhancement_assessed:
        return Claims(
            tumour=tumour, enhancement=False, necrosis=False, non_enhancing_core=False, pattern="not_assessed",
            high_grade_features=False, reliable=not reasons, unreliable_reasons=reasons,
            location_available=m.location is not None, enhancement_assessed=False,
            whole_tumour_assessed=whole_tumour_assessed,
        )
    tc, et = region(m, "TC"), region(m, "ET")
    necrotic = label_volume(m, NECROTIC_LABEL)
    et = label_volume(m, ENHANCING_LABEL) or et
    enhancement = tumour and et >= ENHANCEMENT_MIN_ML
    necrosis = enhancement and necrotic >= NECROSIS_MIN_ML and tc > 0 and et / tc >= NECROSIS_MIN_ENHANCING_SHARE_OF_CORE
    if not enhancement:
        pattern: EnhancementPattern = "none"
    elif necrosis and et >= RIM_MIN_ENHANCING_ML and et / necrotic <= RIM_MAX_RATIO:
        pattern = "rim"
    else:
        pattern = "solid"
    return Claims(
        tumour=tumour,
        enhancement=enhancement,
        necrosis=necrosis,
        non_enhancing_core=tumour and not necrosis and necrotic >= NECROSIS_MIN_ML,
        pattern=pattern,
        high_grade_features=enhancement and necrosis and not reasons,
        reliable=not reasons,
        unreliable_reasons=reasons,
        location_available=m.location is not None,
        enhancement_assessed=True,
        whole_tumour_assessed=whole_tumour_assessed,
    )
