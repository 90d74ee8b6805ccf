"""Optional LLM polishing of the deterministic draft through an OpenAI-compatible chat-completions endpoint.

Guardrails (each one falls back to the deterministic draft, never fails the request):
* no PHI in the prompt: `build_prompt` takes only the measurements, the model name and the draft sections;
  it is never given the patient, the study, dates or UIDs (and the draft text contains none);
* a timeout (`llm_timeout_s`) on the whole call, no retries;
* the answer must be a JSON object with the four sections, each a non-empty string;
* every number in the answer must equal a number of the measurements or of the draft (regex parse, with a
  tolerance for rounding: "45" or "45.4" match 45.44) — one invented number rejects the whole answer;
* no side (left/right/bilateral) the draft does not name. Other wording is not checked: the radiologist
  reviews the text before signing, and the PDF marks it "[AI-drafted]".
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import httpx

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.schemas import SECTION_NAMES, Sections

logger = logging.getLogger("glioscope.reporting.llm")

NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:\.\d+)?")
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
WORD = re.compile(r"[a-z]+")
SIDE_WORDS = {"left", "right", "bilateral"}

SYSTEM_PROMPT = (
    "You are helping a neuroradiologist word a brain MRI tumour report. Rewrite the draft sections in clear, "
    "concise clinical English. Keep every statement of the draft, add no findings, and use only numbers that "
    "appear in the draft or the measurements (no new numbers, no recalculation). Answer with a JSON object "
    'with exactly the keys "findings", "impression", "diagnosis", "recommendations" (strings).'
)


@dataclass(frozen=True)
class LlmConfig:
    url: str  # base URL of the OpenAI-compatible API, e.g. http://host:8000/v1
    model: str
    api_key: str | None
    timeout_s: float


@dataclass(frozen=True)
class PolishResult:
    sections: Sections
    ai_drafted: bool
    reason: str  # "polished" or why the draft was kept


def prompt_measurements(measurements: Measurements) -> dict[str, object]:
    """The measurements the LLM may read and quote: no identifiers (the measured image's UIDs and series
    description), no scanner coordinates, no registration matrix."""
    data = measurements.model_dump(
        mode="json", exclude={"atlas_registration", "centroid_ras_mm", "axial_slice_index", "location_note"}
    )
    if measurements.measured_on is not None:
        data["measured_on"] = {"series_number": measurements.measured_on.series_number,
                               "instance_number": measurements.measured_on.instance_number}
    return data


def build_prompt(measurements: Measurements, draft: Sections, model_name: str) -> list[dict[str, str]]:
    """The chat messages. Only measurements and draft text: never patient or study data."""
    facts = {
        "segmentation_model": model_name,
        "measurements": prompt_measurements(measurements),
        "draft": draft.model_dump(),
    }
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": json.dumps(facts, ensure_ascii=False)},
    ]


def _numbers_in(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [float(n.replace("−", "-")) for n in NUMBER.findall(THOUSANDS.sub("", value))]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers_in(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers_in(v)]
    return []


def allowed_numbers(measurements: Measurements, draft: Sections, model_name: str = "") -> set[float]:
    numbers = set(_numbers_in(prompt_measurements(measurements)))
    numbers |= set(_numbers_in(draft.model_dump()))
    numbers |= set(_numbers_in(model_name))
    return numbers


def _decimals(token: str) -> int:
    return len(token.split(".", 1)[1]) if "." in token else 0


def number_matches(token: str, allowed: set[float]) -> bool:
    """`token` (as written) equals an allowed value up to its own rounding (sign ignored: "30.2 mm to the left")."""
    value = abs(float(token.replace("−", "-")))
    tolerance = 0.5 * 10 ** (-_decimals(token)) + 1e-9
    return any(math.isclose(value, abs(a), abs_tol=tolerance) or abs(value - abs(a)) <= tolerance for a in allowed)


def unsupported_numbers(text: str, allowed: set[float]) -> list[str]:
    tokens = NUMBER.findall(THOUSANDS.sub("", text))
    return [t for t in tokens if not number_matches(t.lstrip("+"), allowed)]


def _parse_answer(content: str) -> dict[str, str]:
    content = content.strip()
    fenced = re.search(r"\{.*\}", content, re.S)
    if fenced is None:
        raise ValueError("no JSON object in the answer")
    data = json.loads(fenced.group(0))
    if not isinstance(data, dict):
        raise ValueError("answer is not a JSON object")
    out = {}
    for name in SECTION_NAMES:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"section {name!r} missing or empty")
        out[name] = value.strip()
    return out


def polish(
    config: LlmConfig, measurements: Measurements, draft: Sections, model_name: str, client: httpx.Client | None = None
) -> PolishResult:
    """Ask the LLM to reword the draft; return the draft itself (ai_drafted False) on any failure."""
    messages = build_prompt(measurements, draft, model_name)
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    body = {"model": config.model, "messages": messages, "temperature": 0}
    url = config.url.rstrip("/") + "/chat/completions"
    try:
        own = client is None
        http = client or httpx.Client(timeout=httpx.Timeout(config.timeout_s))
        try:
            response = http.post(url, json=body, headers=headers, timeout=config.timeout_s)
        finally:
            if own:
                http.close()
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        answer = _parse_answer(content)
    except httpx.TimeoutException:
        logger.warning("LLM polishing timed out after %.1f s; keeping the deterministic draft", config.timeout_s)
        return PolishResult(draft, False, "timeout")
    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
        logger.warning("LLM polishing failed (%s); keeping the deterministic draft", type(exc).__name__)
        return PolishResult(draft, False, f"error: {type(exc).__name__}")
    allowed = allowed_numbers(measurements, draft, model_name)
    bad = {name: unsupported_numbers(text, allowed) for name, text in answer.items()}
    bad = {k: v for k, v in bad.items() if v}
    draft_words = set(WORD.findall(" ".join(draft.model_dump().values()).lower()))
    for name, text in answer.items():  # a side the draft never names (left <-> right swaps)
        new_sides = (set(WORD.findall(text.lower())) & SIDE_WORDS) - draft_words
        if new_sides:
            bad.setdefault(name, []).extend(sorted(new_sides))
    if bad:
        logger.warning("LLM answer has numbers not in the measurements or the draft (%s); keeping the draft", bad)
        return PolishResult(draft, False, "unsupported numbers or sides: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items()))
    polished = Sections(**answer)
    caution = " ".join(measurements.input_warnings)
    if caution and caution not in polished.findings:  # the input warnings are kept word for word
        polished = polished.model_copy(update={"findings": f"{polished.findings} Input quality: {caution}"})
    return PolishResult(polished, True, "polished")
