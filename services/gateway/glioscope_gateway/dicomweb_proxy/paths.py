"""The DICOMweb routes the gateway forwards, parsed into a `DicomwebRoute` or refused.

The proxy must never let a caller reach Orthanc's own REST API (`/tools/find`, `/system`, `/patients`,
...) behind the DICOMweb root. Instead of looking for dangerous paths, the path is matched against the
grammar of the routes the viewer and STOW-RS clients need (DICOM PS3.18 sections 10.4 to 10.6), every
segment against a strict pattern (UIDs are digits and dots, frame lists digits and commas, bulkdata
tags hexadecimal), and the upstream URL is rebuilt from the matched segments only. Anything else,
percent-encodings of any depth included, is not a route: the caller gets 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")  # PS3.5 9.1: digits and dots, at most 64 characters
FRAME_LIST = re.compile(r"[1-9][0-9]{0,5}(?:,[1-9][0-9]{0,5}){0,63}")
BULK_TAG = re.compile(r"[0-9A-Fa-f]{8}|[0-9]{1,6}")  # Orthanc's bulkdata URIs: tags and item indices
MAX_UID_LENGTH = 64
MAX_BULK_SEGMENTS = 16

QIDO_ROOTS = ("studies", "series", "instances")
# What may follow a study, series or instance UID (besides the next level).
RESOURCE_SUFFIXES = ("metadata", "rendered", "thumbnail")


class NotARoute(ValueError):
    """The path is not one of the DICOMweb routes the proxy forwards."""


@dataclass(frozen=True)
class DicomwebRoute:
    """A parsed DICOMweb path: `segments` are safe to put in a URL as they are."""

    segments: tuple[str, ...]
    study_instance_uid: str | None
    is_stow: bool

    @property
    def path(self) -> str:
        return "/".join(self.segments)


def _uid(segment: str) -> str:
    if len(segment) > MAX_UID_LENGTH or not UID.fullmatch(segment):
        raise NotARoute("not a UID")
    return segment


def _instance_tail(rest: list[str]) -> None:
    """What may follow `instances/{uid}`: metadata, rendered, thumbnail, frames/{list}[/rendered|/thumbnail], bulk/..."""
    if not rest:
        return
    head, tail = rest[0], rest[1:]
    if head in RESOURCE_SUFFIXES and not tail:
        return
    if head == "frames" and tail and FRAME_LIST.fullmatch(tail[0]):
        if len(tail) == 1 or (len(tail) == 2 and tail[1] in ("rendered", "thumbnail")):
            return
    if head == "bulk" and 0 < len(tail) <= MAX_BULK_SEGMENTS and all(BULK_TAG.fullmatch(s) for s in tail):
        return
    raise NotARoute("unknown instance resource")


def _series_tail(rest: list[str]) -> None:
    if not rest:
        return
    head, tail = rest[0], rest[1:]
    if head in RESOURCE_SUFFIXES and not tail:
        return
    if head == "instances":
        if not tail:
            return  # QIDO-RS of a series' instances
        _uid(tail[0])
        _instance_tail(tail[1:])
        return
    raise NotARoute("unknown series resource")


def _study_tail(rest: list[str], method: str) -> None:
    if not rest:
        return
    if method == "POST":
        raise NotARoute("STOW-RS stores to /studies or /studies/{uid} only")
    head, tail = rest[0], rest[1:]
    if head in RESOURCE_SUFFIXES and not tail:
        return
    if head == "instances" and not tail:
        return  # QIDO-RS of a study's instances
    if head == "series":
        if not tail:
            return
        _uid(tail[0])
        _series_tail(tail[1:])
        return
    raise NotARoute("unknown study resource")


def stow_route(study_instance_uid: str) -> DicomwebRoute:
    """`POST studies/{uid}` for a UID already checked by the caller (see parse_route's patterns)."""
    return DicomwebRoute(("studies", _uid(study_instance_uid)), study_instance_uid, is_stow=True)


def parse_route(path: str, method: str) -> DicomwebRoute:
    """The route for `path` (below /dicom-web/, as Starlette decoded it once) and `method`, or NotARoute.

    Segments are matched literally: a `%` (an encoding left after Starlette's decoding), a dot
    segment, a backslash, an empty segment inside the path or any other character outside the
    grammar makes the path unknown, so there is nothing left for Orthanc to decode or normalise."""
    if method not in ("GET", "POST"):
        raise NotARoute("method")
    stripped = path[:-1] if path.endswith("/") else path
    segments = stripped.split("/")
    if not stripped or any(not s for s in segments):
        raise NotARoute("empty segment")
    root, rest = segments[0], segments[1:]
    if root not in QIDO_ROOTS:
        raise NotARoute("unknown root")
    if method == "POST" and root != "studies":
        raise NotARoute("STOW-RS stores to /studies only")
    study_uid: str | None = None
    if root == "studies" and rest:
        study_uid = _uid(rest[0])
        _study_tail(rest[1:], method)
    elif rest:
        # Retrieval is always below its study, so that the study's project can be checked.
        raise NotARoute("series and instances are retrieved below their study")
    return DicomwebRoute(tuple(segments), study_uid, is_stow=method == "POST")
