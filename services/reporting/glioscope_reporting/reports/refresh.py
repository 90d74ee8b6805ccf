"""A report follows its segmentation: when a clinician saves an edited mask (SEG version n), the report's
measurements, structured fields and drafted text are those of version n.

Per section: text nobody has edited (the draft as drafted, or as the LLM worded it) is replaced by the new
draft; text a clinician wrote is kept, and when the draft of that section changed with the new numbers
(its figures or claims no longer match) the section is marked for review. Sign-off is refused while a
section is marked (ReportService.sign); editing the section clears its mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glioscope_reporting.reports.schemas import SECTION_NAMES, Sections


@dataclass
class RefreshedSections:
    sections: dict[str, str]
    ai_sections: dict[str, bool]
    redrafted: list[str] = field(default_factory=list)  # replaced by the new draft
    review: list[str] = field(default_factory=list)  # clinician text kept whose draft changed


def refresh_sections(
    current: dict[str, str],
    ai_sections: dict[str, bool],
    old_draft: Sections,
    new_draft: Sections,
    pending_review: list[str],
) -> RefreshedSections:
    """`current`: the report's sections; `ai_sections`: which of them the LLM worded (no person edited them);
    `old_draft` / `new_draft`: the deterministic drafts of the old and the new measurements;
    `pending_review`: sections already marked (they stay marked)."""
    sections = dict(current)
    ai = {name: bool(ai_sections.get(name, False)) for name in SECTION_NAMES}
    result = RefreshedSections(sections=sections, ai_sections=ai, review=[n for n in SECTION_NAMES if n in pending_review])
    for name in SECTION_NAMES:
        before, after = getattr(old_draft, name), getattr(new_draft, name)
        if before == after:
            continue
        written_by_a_person = not ai[name] and sections.get(name, "") != before
        if written_by_a_person:
            if name not in result.review:
                result.review.append(name)
            continue
        sections[name] = after
        ai[name] = False
        result.redrafted.append(name)
    result.review = [n for n in SECTION_NAMES if n in result.review]
    return result
