"""One vocabulary of job stages (issue 21, item 5): the viewer's list (frontend/src/features/jobs/stages.ts)
is the backend's (glioscope_common.job_stages), the worker's pipeline reports exactly its pipeline stages
with a place on the progress bar each, and every stage a service writes into a job is in it. No browser."""

from __future__ import annotations

import re
from pathlib import Path

from glioscope_common.job_stages import JOB_STAGES, PIPELINE_STAGES, WAITING_STAGES

REPO = Path(__file__).resolve().parents[2]
STAGES_TS = REPO / "frontend" / "src" / "features" / "jobs" / "stages.ts"


def _ts_list(name: str, source: str) -> list[str]:
    match = re.search(rf"export const {name} = \[(.*?)\] as const;", source, re.S)
    assert match, f"{name} not found in {STAGES_TS}"
    out: list[str] = []
    for item in (i.strip() for i in match.group(1).split(",")):
        if item.startswith("..."):
            out.extend(_ts_list(item[3:], source))
        elif item:
            out.append(item.strip("'\""))
    return out


def test_the_frontend_stage_list_is_the_backends() -> None:
    source = STAGES_TS.read_text()
    assert _ts_list("WAITING_STAGES", source) == list(WAITING_STAGES)
    assert _ts_list("PIPELINE_STAGES", source) == list(PIPELINE_STAGES)
    assert _ts_list("JOB_STAGES", source) == list(JOB_STAGES)


def test_the_worker_reports_only_known_stages() -> None:
    from glioscope_inference.pipeline import STAGES
    from glioscope_inference.segmentation.service import PIPELINE_PROGRESS

    assert tuple(STAGES) == PIPELINE_STAGES
    assert set(PIPELINE_PROGRESS) == set(PIPELINE_STAGES)  # each has its place on the progress bar
    assert len(set(JOB_STAGES)) == len(JOB_STAGES)


# stage literals the services write: stage="x", .stage = "x", _progress(job_id, "x", …), with stage("x"), report("x", …)
_WRITES = re.compile(r"""(?:\bstage\s*=\s*|\.stage\s*=\s*|_progress\(\s*job_id,\s*|with stage\(|\breport\()["']([a-z_-]+)["']""")


def test_every_stage_the_services_write_is_in_the_vocabulary() -> None:
    seen: dict[str, str] = {}
    for folder in ("services/inference/glioscope_inference", "services/gateway/glioscope_gateway", "services/common/glioscope_common"):
        for path in (REPO / folder).rglob("*.py"):
            for stage in _WRITES.findall(path.read_text()):
                seen.setdefault(stage, str(path.relative_to(REPO)))
    assert {"fetch", "done", "waiting-retry", "requeued", "coregister", "outputs"} <= set(seen), seen
    unknown = {s: p for s, p in seen.items() if s not in JOB_STAGES}
    assert not unknown, f"stages written but missing from glioscope_common.job_stages: {unknown}"
