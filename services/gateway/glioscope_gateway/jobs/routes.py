from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from glioscope_gateway.deps import Container, container
from glioscope_gateway.studies.schemas import JobOut

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

TERMINAL = {"succeeded", "failed"}


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, c: Container = Depends(container)) -> JobOut:
    return JobOut.model_validate(c.studies.get_job(job_id))


@router.get("/{job_id}/events", summary="Live job progress (Server-Sent Events) until the job ends")
async def job_events(job_id: str, request: Request, c: Container = Depends(container)) -> StreamingResponse:
    first = JobOut.model_validate(await run_in_threadpool(c.studies.get_job, job_id))

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
