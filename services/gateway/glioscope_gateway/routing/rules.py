"""Which studies are segmented (GLIOSCOPE_PROCESSING_RULES). No rules: every segmentable study, as before.
With rules: the first rule that matches decides; a study no rule matches is stored and listed
(status not_processed, the reason in processing_note) and gets no job."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from glioscope_gateway.routing.config import ProcessingRule


@dataclass(frozen=True)
class StudyFacts:
    """What the rules look at. `calling_aet`: "" when the study did not come by C-STORE."""

    calling_aet: str = ""
    study_description: str = ""
    project: str = ""
    modalities: tuple[str, ...] = ()
    series_descriptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    process: bool
    reason: str = ""
    rule: str | None = None


@dataclass
class RuleSet:
    rules: Sequence[ProcessingRule] = field(default_factory=list)

    @property
    def configured(self) -> bool:
        return bool(self.rules)

    @property
    def needs_calling_aet(self) -> bool:
        return any(rule.calling_aet for rule in self.rules)

    def decide(self, facts: StudyFacts) -> Decision:
        if not self.rules:
            return Decision(True, "no processing rules configured")
        for index, rule in enumerate(self.rules):
            if matches(rule, facts):
                label = rule.name or f"#{index + 1}"
                if rule.process:
                    return Decision(True, f"processing rule {label} matched", label)
                return Decision(False, f"excluded by processing rule {label}", label)
        return Decision(False, "no processing rule matched " + describe(facts))


def _any_equal(wanted: Sequence[str], values: Sequence[str]) -> bool:
    wanted_folded = {w.strip().casefold() for w in wanted}
    return any(v.strip().casefold() in wanted_folded for v in values)


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text, re.IGNORECASE) is not None


def matches(rule: ProcessingRule, facts: StudyFacts) -> bool:
    if rule.calling_aet and not _any_equal(rule.calling_aet, [facts.calling_aet]):
        return False
    if rule.modality and not _any_equal(rule.modality, facts.modalities):
        return False
    if rule.project and not _any_equal(rule.project, [facts.project]):
        return False
    if rule.study_description and not _search(rule.study_description, facts.study_description):
        return False
    if rule.series_description and not any(_search(rule.series_description, d) for d in facts.series_descriptions):
        return False
    return True


def describe(facts: StudyFacts) -> str:
    """The facts in the note a user sees (no patient data: descriptions, AE title, modalities, project)."""
    parts = [f"calling AET {facts.calling_aet or '-'}", f"modalities {','.join(sorted(set(facts.modalities))) or '-'}",
             f"study description {facts.study_description!r}", f"project {facts.project}"]
    return "(" + "; ".join(parts) + ")"
