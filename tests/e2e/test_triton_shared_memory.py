"""The services configuration with tensors to Triton through shared memory
(GLIOSCOPE_TRITON_SHARED_MEMORY=system, for a Triton on the worker's host): the same study comes out
segmented, and the worker's regions are really registered with Triton."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
import pytest

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.testing import fresh_postgres_database

from .conftest import E2ECase, Platform, platform_env, start_platform, upload, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("platform-shm")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    orthanc.start()
    stack = ExitStack()
    try:
        # Its own database: the flow tests upload the same study to the session's.
        database_url = stack.enter_context(fresh_postgres_database("glioscope_shm"))
        yield from start_platform(tmp, platform_env("services-shm", tmp, request, database_url), orthanc)
    finally:
        stack.close()
        orthanc.stop()


def test_a_study_is_segmented_through_triton_shared_memory(platform: Platform, e2e_case: E2ECase, triton) -> None:
    import tritonclient.grpc as grpcclient

    response = upload(platform.client, e2e_case.files)
    assert response.status_code == 201, response.text
    job = wait_for_job(platform.client, response.json()["job"]["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    measurements = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}/measurements").json()
    true_wt_ml = float((e2e_case.label > 0).sum()) * abs(np.linalg.det(e2e_case.t1c.affine[:3, :3])) / 1000
    assert 0.5 * true_wt_ml < measurements["region_volumes_ml"]["WT"] < 1.6 * true_wt_ml
    client = grpcclient.InferenceServerClient(triton.grpc_url.removeprefix("grpc://"))
    try:
        regions = client.get_system_shared_memory_status(as_json=True).get("regions", {})
    finally:
        client.close()
    names = [region["name"] for region in regions.values()]
    assert any(n.startswith("glioscope_") and n.endswith("_in") for n in names), names
    assert any(n.startswith("glioscope_") and n.endswith("_out") for n in names), names
