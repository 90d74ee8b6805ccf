"""Settings of result routing and processing rules (GLIOSCOPE_DESTINATIONS, GLIOSCOPE_PROCESSING_RULES: JSON
lists; chart values routing.destinations / routing.rules; docs/deploy.md "Routing results to the PACS and
processing rules")."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_AET = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")
ResultKind = Literal["seg", "sr", "pdf"]


class Destination(BaseModel):
    """A PACS (or any DICOM node) that receives results.

    `on: completed`: every SEG when it is stored (a model run or an edited version), and SR/PDF whenever
    they are stored (drafts on explicit export, signed versions); `on: signed`: the signed (VERIFIED) SR and
    PDF and the SEG the signed SR cites, once a radiologist signs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    protocol: Literal["dicomweb", "dimse"]
    on: Literal["completed", "signed"] = "completed"
    what: list[ResultKind] = Field(default_factory=lambda: ["seg", "sr", "pdf"], min_length=1)
    # dicomweb: the STOW-RS root (…/dicom-web) and HTTP basic credentials (optional).
    url: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    # dimse: the destination's AE title, host and port; our calling AE title (the PACS must know it).
    aet: str = ""
    host: str = ""
    port: int = Field(104, gt=0, lt=65536)
    calling_aet: str = "GLIOSCOPE"
    timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _protocol_fields(self) -> "Destination":
        if self.protocol == "dicomweb" and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"destination {self.name!r}: dicomweb needs url (http(s)://…/dicom-web)")
        if self.protocol == "dimse":
            for field in ("aet", "calling_aet"):
                if not _AET.fullmatch(getattr(self, field)):
                    raise ValueError(f"destination {self.name!r}: {field} must be 1-16 characters without a backslash")
            if not self.host:
                raise ValueError(f"destination {self.name!r}: dimse needs host")
        return self

    @property
    def auth(self) -> tuple[str, str] | None:
        password = self.password.get_secret_value()
        return (self.username, password) if self.username else None


class ProcessingRule(BaseModel):
    """A study is segmented when a rule matches it (rules in order, the first match decides; `process: false`
    makes a rule that excludes). Every criterion given must hold; lists match any of their values (case-
    insensitive); descriptions are regular expressions searched case-insensitively (anchor with ^…$)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=64)
    process: bool = True
    calling_aet: list[str] = []  # the AE title that sent the study by C-STORE (Orthanc's RemoteAET)
    modality: list[str] = []  # any series of the study has one of them
    study_description: str = ""
    series_description: str = ""  # any series' description matches
    project: list[str] = []

    @field_validator("calling_aet", "modality", "project", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("study_description", "series_description")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {value!r} ({exc})") from exc
        return value
