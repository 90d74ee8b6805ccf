"""Who is calling, and what each role may do (the roles matrix in docs/security.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from glioscope_common.records.access import Role


@dataclass(frozen=True)
class Principal:
    subject: str  # a username, "oidc:<name>" or "key:<api key id>"; never PHI
    role: Role
    projects: tuple[str, ...] | None  # None: every project (admins, unrestricted service keys)
    kind: str  # password | oidc | api_key

    def can_see(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    @property
    def deidentified(self) -> bool:
        """Researchers get studies without patient identifiers and no raw DICOM."""
        return self.role == Role.researcher


def visible_projects(principal: Principal) -> Sequence[str] | None:
    return principal.projects


ALL = frozenset(Role)
READ = ALL  # worklist, studies, jobs, measurements, NIfTI mask (researchers de-identified)
IDENTIFIED = frozenset({Role.admin, Role.radiologist, Role.clinician, Role.service})  # DICOM, PDF, DICOMweb
WRITE = frozenset({Role.admin, Role.radiologist, Role.service})  # upload, sequences, jobs, STOW-RS
EXPORT = frozenset({Role.admin, Role.radiologist, Role.researcher})  # de-identified export
ADMIN = frozenset({Role.admin})
