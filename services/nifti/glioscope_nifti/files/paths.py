"""BIDS path rules: the only relative paths the store accepts. Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from glioscope_common.errors import InvalidInput

LABEL = r"[a-zA-Z0-9]+"
LABEL_RE = re.compile(rf"^{LABEL}$")
RAW_SUFFIXES = ("T1w", "T2w", "FLAIR")
DERIVATIVE_SUFFIXES = ("dseg", "probseg", "mask")  # mask: the brain mask, _desc-brain_mask
DERIVATIVES_PREFIX = "derivatives/glioscope"
EXTENSIONS = (".nii.gz", ".json")
# Optional entities in BIDS order (anat raw data / segmentation derivatives).
RAW_ENTITIES = ("acq", "ce", "rec", "run")
DERIVATIVE_ENTITIES = ("space", "res", "label", "desc")

_RAW_RE = re.compile(
    rf"^sub-(?P<sub>{LABEL})/ses-(?P<ses>{LABEL})/anat/"
    rf"sub-(?P<fsub>{LABEL})_ses-(?P<fses>{LABEL})(?P<entities>(?:_[a-z]+-{LABEL})*)"
    rf"_(?P<suffix>[A-Za-z0-9]+)(?P<ext>\.nii\.gz|\.json)$"
)
_DERIV_RE = re.compile(
    rf"^{DERIVATIVES_PREFIX}/sub-(?P<sub>{LABEL})/ses-(?P<ses>{LABEL})/anat/"
    rf"sub-(?P<fsub>{LABEL})_ses-(?P<fses>{LABEL})(?P<entities>(?:_[a-z]+-{LABEL})*)"
    rf"_(?P<suffix>[A-Za-z0-9]+)(?P<ext>\.nii\.gz|\.json)$"
)
_SAFE_CHARS = re.compile(r"^[A-Za-z0-9._/-]+$")

EXPECTED = (
    "expected sub-<label>/ses-<label>/anat/sub-<label>_ses-<label>[_<key>-<value>]*_<T1w|T2w|FLAIR>.nii.gz "
    "(T1c: _ce-gadolinium_T1w) or derivatives/glioscope/sub-<label>/ses-<label>/anat/"
    "sub-<label>_ses-<label>[_space-<label>][_desc-<label>]_<dseg|probseg|mask>.nii.gz (or .json sidecars); labels [a-zA-Z0-9]+"
)


@dataclass(frozen=True)
class BidsPath:
    relative: str
    subject: str
    session: str
    suffix: str
    extension: str
    entities: tuple[tuple[str, str], ...]
    derivative: bool

    @property
    def is_sidecar(self) -> bool:
        return self.extension == ".json"

    @property
    def image_path(self) -> str:
        """The .nii.gz this path is (or is the sidecar of)."""
        return self.relative.removesuffix(self.extension) + ".nii.gz"


def check_label(value: str, what: str) -> str:
    if not LABEL_RE.match(value):
        raise InvalidInput(f"{what} label must match [a-zA-Z0-9]+ (got {value!r})")
    return value


def parse_bids_path(raw: str) -> BidsPath:
    """Validate a relative dataset path; raise InvalidInput with a precise reason otherwise."""
    if not raw:
        raise InvalidInput("empty path; " + EXPECTED)
    if "\x00" in raw:
        raise InvalidInput("path contains a NUL byte")
    if "\\" in raw:
        raise InvalidInput("path contains a backslash; use '/' separators")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise InvalidInput("absolute paths are not allowed; paths are relative to the dataset root")
    segments = raw.split("/")
    if any(seg in (".", "..") for seg in segments):
        raise InvalidInput("'.' and '..' path segments are not allowed")
    if raw.endswith("/"):
        raise InvalidInput("path must name a file, not end with '/'")
    if "" in segments:
        raise InvalidInput("empty path segment ('//') is not allowed")
    if not _SAFE_CHARS.match(raw):
        raise InvalidInput("path may only contain ASCII letters, digits, '.', '_', '-' and '/' (no spaces or unicode)")

    derivative = raw.startswith(DERIVATIVES_PREFIX + "/")
    match = (_DERIV_RE if derivative else _RAW_RE).match(raw)
    if match is None:
        raise InvalidInput(f"not a Glioscope BIDS path: {raw!r}; " + EXPECTED)
    if match["fsub"] != match["sub"] or match["fses"] != match["ses"]:
        raise InvalidInput(
            f"file name says sub-{match['fsub']}_ses-{match['fses']} but the folders say "
            f"sub-{match['sub']}/ses-{match['ses']}"
        )
    suffix = match["suffix"]
    allowed_suffixes = DERIVATIVE_SUFFIXES if derivative else RAW_SUFFIXES
    if suffix not in allowed_suffixes:
        raise InvalidInput(f"suffix {suffix!r} not allowed here; expected one of {', '.join(allowed_suffixes)}")
    entities = tuple(
        tuple(part.split("-", 1)) for part in match["entities"].split("_") if part
    )  # type: ignore[misc]
    order = DERIVATIVE_ENTITIES if derivative else RAW_ENTITIES
    keys = [k for k, _ in entities]
    unknown = [k for k in keys if k not in order]
    if unknown:
        raise InvalidInput(f"entity {unknown[0]!r} not allowed; allowed here, in this order: {', '.join(order)}")
    if keys != sorted(keys, key=order.index) or len(set(keys)) != len(keys):
        raise InvalidInput(f"entities must appear once each, in BIDS order: {', '.join(order)}")
    for key, value in entities:
        if key == "run" and not value.isdigit():
            raise InvalidInput("run label must be a number")
    return BidsPath(
        relative=raw,
        subject=match["sub"],
        session=match["ses"],
        suffix=suffix,
        extension=match["ext"],
        entities=entities,  # type: ignore[arg-type]
        derivative=derivative,
    )


def build_raw_path(subject: str, session: str, suffix: str, entities: dict[str, str]) -> BidsPath:
    check_label(subject, "subject")
    check_label(session, "session")
    parts = [f"sub-{subject}", f"ses-{session}"]
    parts += [f"{k}-{entities[k]}" for k in RAW_ENTITIES if entities.get(k)]
    name = "_".join(parts) + f"_{suffix}.nii.gz"
    return parse_bids_path(f"sub-{subject}/ses-{session}/anat/{name}")


def resolve_inside(root: Path, relative: str) -> Path:
    """Join and make sure the result (symlinks resolved) stays inside root."""
    root_resolved = root.resolve()
    target = (root_resolved / relative).resolve()
    if not target.is_relative_to(root_resolved):
        raise InvalidInput("path escapes the dataset root")
    return target
