"""Segmentation versions: list them, save an edited mask as a new version.

The result routes in studies/routes.py (`/segmentation?version=N`, `/measurements`, `/mask.nii.gz`)
answer the latest version (edited if any) through `SegmentationVersions.resolve`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import PayloadTooLarge
from glioscope_common.records.access import AuditAction, Role
from glioscope_gateway.auth.deps import audited, require
from glioscope_gateway.auth.principal import READ, Principal
from glioscope_gateway.segmentations.schemas import MAX_ENCODED_CHARS, VersionCreated, VersionIn, VersionOut
from glioscope_gateway.segmentations.service import SegmentationVersions
from glioscope_gateway.studies.admission import declared_length

EDIT = frozenset({Role.admin, Role.radiologist, Role.clinician})
MAX_BODY_BYTES = MAX_ENCODED_CHARS + 64 * 1024  # the labels plus the rest of the JSON


class BoundedBodyRoute(APIRoute):
    """Refuses a request body above MAX_BODY_BYTES (413) while it arrives, before it is parsed."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            declared = declared_length(request)
            if declared is not None and declared > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"the request body exceeds {MAX_BODY_BYTES} bytes")
            body = bytearray()
            async for chunk in request.stream():  # also a chunked body without a length
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise PayloadTooLarge(f"the request body exceeds {MAX_BODY_BYTES} bytes")
            request._body = bytes(body)  # what Request.body() returns from now on (Starlette's cache)
            return await handler(request)

        return bounded


router = APIRouter(prefix="/api/studies", tags=["segmentation versions"], route_class=BoundedBodyRoute)


def segmentation_versions(request: Request) -> SegmentationVersions:
    return request.app.state.segmentation_versions  # type: ignore[no-any-return]


def version_out(version) -> VersionOut:  # type: ignore[no-untyped-def]
    return VersionOut.model_validate(version, from_attributes=True)


@router.get(
    "/{study_instance_uid}/segmentation/versions",
    response_model=list[VersionOut],
    summary="The segmentation's versions, oldest first: 1 is the model's, later ones edited masks",
    description="Version 1 is the output of the latest succeeded segmentation job; each edit saved on it "
    "adds a version (who, when, its job, its DICOM-SEG and voxel counts per label once the job has "
    "succeeded). An empty list: the study has no finished segmentation.",
    dependencies=[Depends(audited(AuditAction.viewed))],
)
async def list_versions(study_instance_uid: str, principal: Principal = Depends(require(READ)),
                        versions: SegmentationVersions = Depends(segmentation_versions)) -> list[VersionOut]:
    found = await run_in_threadpool(versions.list, study_instance_uid, principal.projects)
    return [version_out(v) for v in found]


@router.post(
    "/{study_instance_uid}/segmentation/versions",
    status_code=202,
    response_model=VersionCreated,
    summary="Save an edited tumour mask as a new DICOM-SEG version (admin, radiologist, clinician)",
    description="The labels (base64 of gzip of uint8, index i + j*nx + k*nx*ny, 0 background, 1 necrotic "
    "core, 2 oedema, 3 enhancing tumour) on the grid of the source series, with Cornerstone3D's geometry "
    "in LPS mm (checked against the series in the PACS). Answers 202 with the new version number and the "
    "job that writes the SEG (new series, the previous one kept), the NIfTI mask and the recomputed "
    "measurements. 409: `base_version` is not the latest version; 422: bad base64/gzip, wrong byte count, "
    "labels outside 0-3, a geometry that does not match, an unknown source series; 413: too large "
    f"(labels ≤ 512 MiB decompressed, body ≤ {MAX_BODY_BYTES} bytes).",
    dependencies=[Depends(audited(AuditAction.edited))],
)
async def create_version(study_instance_uid: str, body: VersionIn, principal: Principal = Depends(require(EDIT)),
                         versions: SegmentationVersions = Depends(segmentation_versions)) -> VersionCreated:
    return await run_in_threadpool(versions.submit, study_instance_uid, principal.projects, principal.subject, body)
