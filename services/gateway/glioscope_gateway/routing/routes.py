"""Admin API of result routing: the deliveries (failed ones first of interest) and a resend."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from glioscope_common.errors import NotFound
from glioscope_common.records.access import AuditAction
from glioscope_common.records.models import DeliveryState
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.auth.deps import require
from glioscope_gateway.auth.principal import ADMIN, Principal
from glioscope_gateway.deps import Container, container
from glioscope_gateway.routing.service import ResultRouter

router = APIRouter(prefix="/api/admin/deliveries", tags=["admin"])
admin_only = require(ADMIN)


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    destination: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    kind: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime


def _router(c: Container) -> ResultRouter:
    if c.result_router is None:
        raise NotFound("no destinations are configured (GLIOSCOPE_DESTINATIONS)")
    return c.result_router


@router.get("", response_model=list[DeliveryOut], summary="List deliveries of results to destinations (e.g. ?state=failed)")
def list_deliveries(
    principal: Principal = Depends(admin_only),
    state: DeliveryState | None = None,
    study: Annotated[str | None, Query(max_length=64, description="StudyInstanceUID")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    c: Container = Depends(container),
) -> list[DeliveryOut]:
    return [DeliveryOut.model_validate(d) for d in _router(c).list(state, study, limit, offset)]


@router.post("/{delivery_id}/resend", response_model=DeliveryOut,
             summary="Send a delivery again now (one already sent stays sent: no second copy)")
def resend_delivery(request: Request, delivery_id: Annotated[str, Path(max_length=32)],
                    principal: Principal = Depends(admin_only), c: Container = Depends(container)) -> DeliveryOut:
    result_router = _router(c)
    delivery = result_router.resend(delivery_id)
    request.state.audit = AuditNote(AuditAction.administered, study_instance_uid=delivery.study_instance_uid)
    return DeliveryOut.model_validate(delivery)
