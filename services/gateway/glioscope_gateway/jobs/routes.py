from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from glioscope_common.records.access import AuditAction
from glioscope_gateway.auth.deps import audited, require
from glioscope_gateway.auth.principal import READ, Principal
from glioscope_gateway.deps import Container, container
from glioscope_gateway.studies.schemas import JobOut

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

TERMINAL = {"succeeded", "failed"}


@router.get("/{job_id}", response_model=JobOut, dependencies=[Depends(audited(AuditAction.viewed, dedupe=True))])
def get_job(job_id: str, request: Request, principal: Principal = Depends(require(READ)),
            c: Container = Depends(container)) -> JobOut:
    job = c.studies.get_job(job_id, principal.projects)
    request.state.audit.study_instance_uid = job.study.study_instance_uid
    return JobOut.model_validate(job)


@router.get(
    "/{job_id}/events",
    summary="Live job progress (Server-Sent Events) until the job ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`progress` events with the job as JSON"}},
    dependencies=[Depends(audited(AuditAction.viewed, dedupe=True))],
)
async def job_events(job_id: str, request: Request, principal: Principal = Depends(require(READ)),
                     c: Container = Depends(container)) -> StreamingResponse:
    row = await run_in_threadpool(c.studies.get_job, job_id, principal.projects)
    request.state.audit.study_instance_uid = row.study.study_instance_uid
    first = JobOut.model_validate(row)

    async def stream() -> AsyncIterator[str]:
        # The database is the truth; polling it keeps one code path for the embedded and the
        # production configuration. A poll every half second is cheap next to a job's seconds.
        last = None
        job = first
        while True:
            snapshot = (job.state.value, job.stage, round(job.progress, 3))
            if snapshot != last:
                last = snapshot
                yield f"event: progress\ndata: {json.dumps(job.model_dump(mode='json'))}\n\n"
            if job.state.value in TERMINAL or await request.is_disconnected():
                return
            await asyncio.sleep(0.5)
            job = JobOut.model_validate(await run_in_threadpool(c.studies.get_job, job_id))

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
