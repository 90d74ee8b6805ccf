"""The Helm chart: renders in every ci/ scenario, lints clean, validates against Kubernetes' schemas,
and follows the platform's policies (docs/deploy.md, shared design)."""

from __future__ import annotations

import copy
import functools
import json
import os
from typing import Any

import pytest
import yaml
from conftest import require_module

from render import CHART, SCENARIOS, component, containers, pod_spec, render, render_scenario, scenario_values

# Kubernetes versions the chart is validated against (kubernetes-validate ships their schemas).
KUBERNETES_VERSIONS = ["1.29", "1.31", "1.33"]
# Custom resources: validated by the checks below, not by kubernetes-validate (no schemas shipped).
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def _helm():  # type: ignore[no-untyped-def]
    require_module("helm_python")


def all_workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if pod_spec(o) is not None]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_values_pass_the_schema_and_render(scenario: str) -> None:
    from render import chart

    chart().validate_schema(scenario_values(scenario))
    objects = render_scenario(scenario)
    assert objects
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "duplicate objects"
    for o in objects:
        labels = o["metadata"].get("labels", {})
        for key in ("name", "instance", "component", "part-of", "version"):
            assert f"app.kubernetes.io/{key}" in labels, (o["kind"], o["metadata"]["name"], key)


def test_schema_rejects_typos_and_is_generated_from_values() -> None:
    import helm_python as helm
    from render import chart
    from schema_gen import dump, generate

    assert (CHART / "values.schema.json").read_text() == dump(generate()), "run python tests/chart/schema_gen.py"
    for bad in ({"gateway": {"replica": 3}}, {"postgresql": {"enable": False}}, {"triton": {"models": {"source": "s3"}}},
                {"workers": {"queues": {"gpu": {"concurency": 2}}}}, {"unknownTopLevel": 1}):
        with pytest.raises(helm.HelmError):
            chart().validate_schema(bad)


def test_every_values_key_is_documented() -> None:
    """Each key has a comment line right above it (content of pass-through Kubernetes maps excepted)."""
    from schema_gen import FREE_LISTS, FREE_OBJECTS

    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("-") or ":" not in stripped:
            continue
        key = stripped.split(":", 1)[0]
        inside_free_map = any(k in FREE_OBJECTS | FREE_LISTS for _, k in stack)
        stack.append((indent, key))
        if inside_free_map:
            continue
        previous = lines[i - 1].strip() if i else ""
        assert previous.startswith("#"), f"values.yaml line {i + 1} ({stripped}) has no comment above it"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_helm_lint_is_clean(scenario: str) -> None:
    import helm_python as helm

    report = helm.lint(CHART, scenario_values(scenario), strict=True, kube_version="v1.31.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@functools.cache
def _schema_contents():  # type: ignore[no-untyped-def]
    import kubernetes_validate.utils as kvu

    original = kvu.schema_contents
    cached = functools.lru_cache(maxsize=None)(original)
    kvu.schema_contents = cached  # the library re-reads the big _definitions.json per object otherwise
    return kvu


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes(version: str) -> None:
    require_module("kubernetes_validate")
    kvu = _schema_contents()
    seen: set[str] = set()
    for scenario in SCENARIOS:
        for o in render_scenario(scenario):
            o.pop("__template__", None)
            if not o["metadata"]["annotations"]:
                del o["metadata"]["annotations"]
            key = json.dumps(o, sort_keys=True)
            if key in seen or o["kind"] in CUSTOM_KINDS:
                continue
            seen.add(key)
            try:
                kvu.validate(o, version, strict=True)
            except kvu.ValidationError as exc:
                pytest.fail(f"{scenario}: {o['kind']}/{o['metadata']['name']} invalid on {version}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_custom_resources_are_well_formed(scenario: str) -> None:
    objects = render_scenario(scenario)
    values = copy.deepcopy(scenario_values(scenario))
    release = values.get("monitoring", {}).get("release", "kube-prometheus-stack")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    for o in objects:
        if o["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert o["apiVersion"] == "monitoring.coreos.com/v1"
            assert o["metadata"]["labels"]["release"] == release
        if o["kind"] == "ServiceMonitor":
            selector = o["spec"]["selector"]["matchLabels"]
            matching = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
            assert matching, f"ServiceMonitor {o['metadata']['name']} selects no Service"
            ports = {p["name"] for s in matching for p in s["spec"]["ports"]}
            for endpoint in o["spec"]["endpoints"]:
                assert endpoint["port"] in ports
        if o["kind"] == "PrometheusRule":
            groups = o["spec"]["groups"]
            assert groups and all(g["rules"] for g in groups)
        if o["kind"] == "ScaledObject":
            assert o["apiVersion"] == "keda.sh/v1alpha1"
            assert o["spec"]["scaleTargetRef"]["name"] in deployments
            trigger = o["spec"]["triggers"][0]
            assert trigger["type"] == "rabbitmq" and trigger["metadata"]["queueName"] in {"cpu", "gpu", "io"}
            target = next(d for d in objects if d["kind"] == "Deployment" and d["metadata"]["name"] == o["spec"]["scaleTargetRef"]["name"])
            assert "replicas" not in target["spec"], "KEDA owns the replicas"


# --- policies of every container (init containers and hook Jobs included) ---------------------------

@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_container_is_locked_down(scenario: str) -> None:
    for o in all_workloads(render_scenario(scenario)):
        spec = pod_spec(o)
        where = f"{scenario}: {o['kind']}/{o['metadata']['name']}"
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert isinstance(pod_sc.get("runAsUser"), int) and pod_sc["runAsUser"] > 0, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for kind, c in containers(o):
            cwhere = f"{where} {kind} container {c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, cwhere
            assert sc.get("readOnlyRootFilesystem") is True, cwhere
            assert sc.get("runAsNonRoot") is True, cwhere
            assert sc.get("privileged", False) is False, cwhere
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], cwhere
            assert not sc.get("capabilities", {}).get("add"), cwhere
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", cwhere
            resources = c.get("resources", {})
            assert resources.get("requests", {}).get("cpu") and resources.get("requests", {}).get("memory"), cwhere
            assert resources.get("limits", {}).get("memory"), cwhere
            if kind == "app" and o["kind"] != "Job":
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                assert mounts.get("/tmp") in tmp_volumes, f"{cwhere}: /tmp is not an emptyDir"


HTTP_SERVICES = {"gateway", "reporting", "nifti"}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_probes_hit_the_real_endpoints(scenario: str) -> None:
    for o in all_workloads(render_scenario(scenario)):
        if o["kind"] == "Job":
            continue
        comp = component(o)
        for kind, c in containers(o):
            if kind == "init":
                continue
            where = f"{scenario}: {comp}/{c['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{where} has no {probe}"
            live, ready = c["livenessProbe"], c["readinessProbe"]
            if c["name"] == "triton":  # its own Deployment, or a sidecar of the gpu workers
                assert live["httpGet"]["path"] == "/v2/health/live", where
                assert ready["httpGet"]["path"] == "/v2/health/ready", where
            elif comp in HTTP_SERVICES:
                assert live["httpGet"]["path"] == "/healthz", where
                assert ready["httpGet"]["path"] == "/readyz", where
            elif comp.startswith("worker-"):
                assert "celery -A glioscope_inference.worker inspect ping" in " ".join(ready["exec"]["command"]), where
                assert live["httpGet"]["port"] == "metrics", where
            elif comp == "orthanc":
                assert "/system" in " ".join(ready["exec"]["command"]), where
                assert "/system" in " ".join(live["exec"]["command"]), where


def test_triton_requests_gpus_and_tolerates_the_gpu_taint() -> None:
    objects = render_scenario("gpu")
    triton = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "triton")
    spec = pod_spec(triton)
    container = next(c for c in spec["containers"] if c["name"] == "triton")
    assert int(container["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in spec["tolerations"])
    # The workers talk to it, and the gateway sends jobs to the gpu queue.
    gateway = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "gateway")
    env = {e["name"]: e.get("value") for e in pod_spec(gateway)["containers"][0]["env"]}
    assert env["GLIOSCOPE_JOB_QUEUE"] == "gpu"
    assert env["GLIOSCOPE_INFERENCE_URL"].startswith("grpc://") and env["GLIOSCOPE_INFERENCE_URL"].endswith(":8001")
    assert any(component(o) == "worker-gpu" for o in objects if o["kind"] == "Deployment")
    # Nothing else asks for a GPU.
    for o in all_workloads(render_scenario("default")):
        for _, c in containers(o):
            assert "nvidia.com/gpu" not in json.dumps(c.get("resources", {}))


def test_triton_serves_the_brain_networks_and_the_workers_call_them() -> None:
    """triton.brainModel (default true): Triton loads the two brain-extraction networks beside the tumour
    model and the workers run brain extraction on it; without Triton they run it in-process."""
    objects = render_scenario("gpu")
    triton = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "triton")
    args = next(c for c in pod_spec(triton)["containers"] if c["name"] == "triton")["args"]
    assert {"--load-model=glioscope_brain_bbox", "--load-model=glioscope_brain_mask"} <= set(args)
    workers = [o for o in objects if o["kind"] == "Deployment" and component(o).startswith("worker")]
    for worker in workers:
        env = {e["name"]: e.get("value") for e in pod_spec(worker)["containers"][0]["env"]}
        assert env["GLIOSCOPE_BRAIN_MODEL_ON_TRITON"] == "true", component(worker)
    for worker in (o for o in render_scenario("default") if o["kind"] == "Deployment" and component(o).startswith("worker")):
        env = {e["name"]: e.get("value") for e in pod_spec(worker)["containers"][0]["env"]}
        assert env["GLIOSCOPE_BRAIN_MODEL_ON_TRITON"] == "false", component(worker)


def test_triton_as_a_sidecar_shares_the_gpu_workers_shared_memory() -> None:
    """placement=sidecar: no Triton Deployment; each gpu worker pod runs Triton beside the worker,
    both with the pod's memory-backed /dev/shm and one uid, the worker told to use it."""
    objects = render_scenario("gpu-sidecar")
    assert not any(component(o) == "triton" for o in objects), "no Triton Deployment, Service or PDB"
    worker = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "worker-gpu")
    spec = pod_spec(worker)
    by_name = {c["name"]: c for c in spec["containers"]}
    assert set(by_name) == {"worker", "triton"}
    shm = next(v for v in spec["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    for c in by_name.values():
        assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"], c["name"]
        assert "runAsUser" not in c.get("securityContext", {}), "one uid for both: the pod's"
    assert spec["securityContext"]["runAsUser"] == 10001
    env = {e["name"]: e.get("value") for e in by_name["worker"]["env"]}
    assert env["GLIOSCOPE_INFERENCE_URL"] == "grpc://127.0.0.1:8001"
    assert env["GLIOSCOPE_TRITON_SHARED_MEMORY"] == "system"
    triton = by_name["triton"]
    assert int(triton["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in json.dumps(by_name["worker"]["resources"])
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in triton["volumeMounts"]
    assert [c["name"] for c in spec["initContainers"]] == ["models"]
    assert spec["runtimeClassName"] == "nvidia" and spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    # Triton's metrics: a port on the workers' Service, scraped and let through by the network policy.
    service = next(o for o in objects if o["kind"] == "Service" and component(o) == "worker-gpu")
    assert {"name": "triton-metrics", "port": 8002, "targetPort": "triton-metrics", "protocol": "TCP"} in service["spec"]["ports"]
    assert "triton-metrics" in [p["name"] for p in triton["ports"]]
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor" and component(o) == "worker-gpu"]
    assert sorted(m["spec"]["endpoints"][0]["port"] for m in monitors) == ["metrics", "triton-metrics"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"
                and o["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "worker-gpu"]
    assert 8002 in [p["port"] for o in policies for rule in o["spec"].get("ingress", []) for p in rule["ports"]]
    # The deployment placement keeps its own Triton and gRPC.
    gpu = render_scenario("gpu")
    worker = next(o for o in gpu if o["kind"] == "Deployment" and component(o) == "worker-gpu")
    assert [c["name"] for c in pod_spec(worker)["containers"]] == ["worker"]
    assert "GLIOSCOPE_TRITON_SHARED_MEMORY" not in json.dumps(pod_spec(worker))


def test_triton_gets_the_malloc_tunables() -> None:
    """The chart's default is what LocalTriton uses (glioscope_common.allocator); the worker keeps
    glibc's defaults; an empty value leaves Triton with glibc's defaults too."""
    from glioscope_common.allocator import TRITON_MALLOC_TUNABLES, tunables_string

    def tunables(objects: list[dict[str, Any]], name: str) -> str | None:
        for o in all_workloads(objects):
            for _, c in containers(o):
                if c["name"] == name:
                    return {e["name"]: e.get("value") for e in c.get("env", [])}.get("GLIBC_TUNABLES")
        raise AssertionError(f"no {name} container")

    gpu = render_scenario("gpu")
    assert tunables(gpu, "triton") == tunables_string(TRITON_MALLOC_TUNABLES)
    assert tunables(gpu, "worker") is None
    values = copy.deepcopy(scenario_values("gpu"))
    values.setdefault("triton", {})["glibcTunables"] = ""
    assert tunables(render(values), "triton") is None


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_service_selects_pods_that_exist(scenario: str) -> None:
    objects = render_scenario(scenario)
    templates = [o["spec"]["template"] for o in all_workloads(objects) if o["kind"] != "Job"]
    for svc in (o for o in objects if o["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        matches = [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]
        assert matches, f"Service {svc['metadata']['name']} selects no pod"
        ports = {p["name"] for t in matches for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {svc['metadata']['name']}: no container port {port['targetPort']}"
    for o in objects:
        if o["kind"] in ("PodDisruptionBudget",):
            selector = o["spec"]["selector"]["matchLabels"]
            assert any(selector.items() <= t["metadata"]["labels"].items() for t in templates), o["metadata"]["name"]
        if o["kind"] == "HorizontalPodAutoscaler":
            target = o["spec"]["scaleTargetRef"]["name"]
            deployment = next(d for d in objects if d["kind"] == "Deployment" and d["metadata"]["name"] == target)
            assert "replicas" not in deployment["spec"], "the HPA owns the gateway's replicas"
        if o["kind"] == "Ingress":
            for rule in o["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    assert path["backend"]["service"]["name"] in {s["metadata"]["name"] for s in objects if s["kind"] == "Service"}


def test_ingress_terminates_tls() -> None:
    ingress = next(o for o in render_scenario("default") if o["kind"] == "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"]
    assert ingress["spec"]["tls"][0]["hosts"] == [r["host"] for r in ingress["spec"]["rules"]]


def test_secrets_come_from_the_existing_secret_only() -> None:
    for scenario in SCENARIOS:
        objects = render_scenario(scenario)
        assert not [o for o in objects if o["kind"] == "Secret"], "the chart must not create Secrets"
        for o in all_workloads(objects):
            for _, c in containers(o):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == "glioscope-secrets"
                    if any(word in e["name"] for word in ("PASSWORD", "TOKEN", "PASS", "AUTH")):
                        assert ref, f"{e['name']} must come from the existing Secret"


def test_external_databases_scenario_runs_no_database() -> None:
    objects = render_scenario("external-databases")
    assert not [o for o in objects if o["kind"] == "StatefulSet" and component(o) in {"postgresql", "rabbitmq", "redis"}]
    gateway = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "gateway")
    env = {e["name"]: e.get("value") for e in pod_spec(gateway)["containers"][0]["env"]}
    assert "glioscope.abcdefgh.eu-west-1.rds.amazonaws.com:5432/glioscope" in env["GLIOSCOPE_DATABASE_URL"]
    assert env["GLIOSCOPE_BROKER_URL"].endswith("@rabbitmq.shared.svc.cluster.local:5672/glioscope")
    assert "redis.shared.svc.cluster.local:6379" in env["GLIOSCOPE_REDIS_URL"]
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


def test_migrations_hook_job() -> None:
    objects = render_scenario("default")
    job = next(o for o in objects if o["kind"] == "Job")
    assert component(job) == "migrations"
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert "pre-upgrade" in hooks and ("post-install" in hooks)  # in-chart Postgres exists only after install
    script = " ".join(pod_spec(job)["containers"][0]["command"])
    assert "from glioscope_common.records.migrate import migrate" in script
    assert "glioscope_reporting" in script and "reporting.migrate(url)" in script
    for o in all_workloads(objects):
        env = {e["name"]: e.get("value") for _, c in containers(o) for e in c.get("env", [])}
        if component(o) == "gateway":
            assert env["GLIOSCOPE_AUTO_MIGRATE"] == "false"
        if component(o) == "reporting":
            assert env["GLIOSCOPE_MIGRATE_ON_START"] == "false"


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_gateway_memory_limit_holds_its_upload_budget(scenario: str) -> None:
    """Every upload byte costs the pod about 5.3 bytes while it is stored (studies/admission.py):
    the memory limit must hold the whole budget of uploads at once, plus the processes themselves."""
    objects = render_scenario(scenario)
    gateway = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "gateway")
    container = pod_spec(gateway)["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    budget, largest = int(env["GLIOSCOPE_UPLOAD_BUDGET_BYTES"]), int(env["GLIOSCOPE_MAX_UPLOAD_BYTES"])
    assert largest <= budget
    assert _bytes(container["resources"]["limits"]["memory"]) >= 6 * budget + 512 * 1024**2


def test_one_worker_deployment_per_enabled_queue() -> None:
    objects = render_scenario("default")
    queues = sorted(o["metadata"]["labels"]["glioscope.io/queue"] for o in objects if o["kind"] == "Deployment" and component(o).startswith("worker-"))
    assert queues == ["cpu", "io"]
    for o in objects:
        if o["kind"] == "Deployment" and component(o).startswith("worker-"):
            command = pod_spec(o)["containers"][0]["command"]
            assert command[command.index("-Q") + 1] == o["metadata"]["labels"]["glioscope.io/queue"]
    # No watcher Deployment: every gateway replica runs the watcher behind leader election (issue 20).
    assert not [o for o in objects if component(o) == "watcher"]
    gateway_env = {e["name"]: e.get("value") for o in objects if o["kind"] == "Deployment" and component(o) == "gateway" for e in pod_spec(o)["containers"][0]["env"]}
    assert gateway_env["GLIOSCOPE_ORTHANC_WATCHER"] == "true"
    assert (gateway_env["GLIOSCOPE_WATCHER_LEADER_POLL_S"], gateway_env["GLIOSCOPE_WATCHER_LEADER_LEASE_S"]) == ("2", "10")
    assert gateway_env["GLIOSCOPE_UPLOAD_PROCESSES"] == "2"
    minimal = {e["name"]: e.get("value") for o in render_scenario("minimal") if o["kind"] == "Deployment" and component(o) == "gateway"
               for e in pod_spec(o)["containers"][0]["env"]}
    assert minimal["GLIOSCOPE_ORTHANC_WATCHER"] == "false"


def test_network_policies_default_deny_and_allow_the_design_flows() -> None:
    objects = render_scenario("gpu")
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    templates = {component(o): o["spec"]["template"]["metadata"]["labels"] for o in all_workloads(objects) if o["kind"] != "Job"}

    def allowed(client: str, server: str, port: int) -> bool:
        for p in policies:
            if "Ingress" not in p["spec"]["policyTypes"] or not p["spec"].get("ingress"):
                continue
            if not p["spec"]["podSelector"]["matchLabels"].items() <= templates[server].items():
                continue
            for rule in p["spec"]["ingress"]:
                if port not in [x["port"] for x in rule.get("ports", [])]:
                    continue
                for peer in rule.get("from", []):
                    sel = peer.get("podSelector", {}).get("matchLabels")
                    if sel and "namespaceSelector" not in peer and sel.items() <= templates.get(client, {}).items():
                        return True
        return False

    def egress_rules(client: str) -> list[dict]:
        """The egress rules of every policy that selects the client's pods (Egress in its policyTypes)."""
        return [rule for p in policies if "Egress" in p["spec"]["policyTypes"]
                and p["spec"]["podSelector"]["matchLabels"].items() <= templates[client].items()
                for rule in p["spec"].get("egress", [])]

    def egress_allowed(client: str, server: str, port: int) -> bool:
        for rule in egress_rules(client):
            ports = [x["port"] for x in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            for peer in rule.get("to", []):
                sel = peer.get("podSelector", {}).get("matchLabels")
                if sel and "namespaceSelector" not in peer and sel.items() <= templates[server].items():
                    return True
        return False

    flows = [("gateway", "orthanc", 8042), ("gateway", "postgresql", 5432), ("gateway", "rabbitmq", 5672),
             ("gateway", "reporting", 8002), ("gateway", "nifti", 8003),
             ("worker-gpu", "triton", 8001), ("worker-gpu", "orthanc", 8042), ("worker-gpu", "nifti", 8003),
             ("worker-gpu", "reporting", 8002), ("worker-gpu", "redis", 6379), ("worker-gpu", "postgresql", 5432),
             ("reporting", "postgresql", 5432), ("nifti", "postgresql", 5432), ("orthanc", "postgresql", 5432)]
    for flow in flows:
        assert allowed(*flow), f"flow {flow} is not allowed in by the server's policy"
        assert egress_allowed(*flow), f"flow {flow} is not allowed out by the client's policies"
    for forbidden in [("frontend", "postgresql", 5432), ("reporting", "triton", 8001), ("nifti", "rabbitmq", 5672), ("gateway", "triton", 8001)]:
        assert not allowed(*forbidden), f"flow {forbidden} should be denied"
    # Egress, every release pod: DNS to kube-dns only (port 53), the release's own pods, nothing else by default:
    # no rule without a destination (anywhere), no ipBlock, no other namespace's pods on other ports.
    for client in templates:
        rules = egress_rules(client)
        assert rules, f"{client} has no egress rule (the default deny would cut even DNS)"
        for rule in rules:
            assert rule.get("to"), f"{client}: an egress rule to anywhere {rule}"
            for peer in rule["to"]:
                assert "ipBlock" not in peer, f"{client}: egress to addresses {peer}"
                if "namespaceSelector" in peer:
                    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}, (client, peer)
                    assert sorted(x["port"] for x in rule["ports"]) == [53, 53], (client, rule)
                else:
                    assert any(peer["podSelector"]["matchLabels"].items() <= labels.items() for labels in templates.values()), \
                        f"{client}: egress to pods outside the release {peer}"


def test_minimal_scenario_has_no_optional_objects() -> None:
    kinds = {o["kind"] for o in render_scenario("minimal")}
    assert not kinds & {"Ingress", "NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"}


def test_monitoring_objects_come_from_infra_files() -> None:
    """infra/ is the single source: the chart's files/ entries are links to it, and the rendered
    PrometheusRule and dashboard ConfigMaps carry those files' content."""
    for name, target in (("dashboards", "infra/grafana/dashboards"), ("rules", "infra/prometheus/rules")):
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a link to {target}"
        assert link.resolve() == (CHART.parents[1] / target).resolve()
    objects = render_scenario("default")
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    source_groups = []
    for path in sorted((CHART / "files" / "rules").glob("*.yaml")):
        source_groups += yaml.safe_load(path.read_text())["groups"]
    assert rule["spec"]["groups"] == source_groups
    dashboards = {k: v for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1" for k, v in o["data"].items()}
    sources = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert sources and sorted(dashboards) == [p.name for p in sources]
    for path in sources:
        assert json.loads(dashboards[path.name]) == json.loads(path.read_text())


def test_upgrade_renders_the_same_objects() -> None:
    install = render(scenario_values("default"))
    upgrade = render(scenario_values("default"), upgrade=True)
    assert [(o["kind"], o["metadata"]["name"]) for o in install] == [(o["kind"], o["metadata"]["name"]) for o in upgrade]


def _orthanc_config(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    configmap = next(o for o in objects if o["kind"] == "ConfigMap" and component(o) == "orthanc")
    return json.loads(configmap["data"]["orthanc.json"]), configmap["data"]


def test_orthanc_is_locked_down() -> None:
    """Finding 4 (docs/security.md, "Orthanc"): credentials, DICOM from the configured modalities only
    (AET and address), no overwrite, duplicates logged."""
    objects = render_scenario("default")
    config, data = _orthanc_config(objects)
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {"${ORTHANC_USERNAME}": "${ORTHANC_PASSWORD}"}
    assert config["OverwriteInstances"] is False
    assert config["DicomCheckModalityHost"] is True and config["DicomCheckCalledAet"] is True
    for option in ("Store", "Echo", "Find", "FindWorklist", "Get", "Move"):
        assert config[f"DicomAlwaysAllow{option}"] is False, option
    assert config["DicomModalities"] == {} and config["DicomModalitiesInDatabase"] is False
    assert config["ExecuteLuaEnabled"] is False and config["RestApiWriteToFileSystemEnabled"] is False
    assert config["LuaScripts"] == ["/etc/orthanc/duplicate-audit.lua"]
    assert data["duplicate-audit.lua"].strip() == (CHART / "files/orthanc/duplicate-audit.lua").read_text().strip()
    orthanc = next(o for o in objects if o["kind"] == "StatefulSet" and component(o) == "orthanc")
    mounts = {m["mountPath"]: m.get("subPath") for _, c in containers(orthanc) for m in c.get("volumeMounts", [])}
    assert mounts["/etc/orthanc/duplicate-audit.lua"] == "duplicate-audit.lua"
    # The services authenticate with settings of their own; no password in any URL.
    gateway = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "gateway")
    env = {e["name"]: e for _, c in containers(gateway) for e in c.get("env", [])}
    assert env["GLIOSCOPE_ORTHANC_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "orthanc-password"
    assert "@" not in env["GLIOSCOPE_ORTHANC_URL"]["value"] and "@" not in env["GLIOSCOPE_DICOMWEB_URL"]["value"]


def test_orthanc_dicom_modalities_come_from_values() -> None:
    import helm_python as helm
    from render import chart

    values = copy.deepcopy(scenario_values("default"))
    values.setdefault("orthanc", {})["dicomModalities"] = {
        "mr-3t": {"aet": "MR3T", "host": "10.20.0.15"},
        "pacs": {"aet": "HOSPITALPACS", "host": "10.20.0.2", "port": 11112, "allowFind": True, "allowStore": False},
    }
    chart().validate_schema(values)
    config, _ = _orthanc_config(render(values))
    assert config["DicomModalities"] == {
        "mr-3t": {"AET": "MR3T", "Host": "10.20.0.15", "Port": 104, "AllowStore": True, "AllowEcho": True,
                  "AllowFind": False, "AllowFindWorklist": False, "AllowMove": False, "AllowGet": False,
                  "AllowStorageCommitment": False},
        "pacs": {"AET": "HOSPITALPACS", "Host": "10.20.0.2", "Port": 11112, "AllowStore": False, "AllowEcho": True,
                 "AllowFind": True, "AllowFindWorklist": False, "AllowMove": False, "AllowGet": False,
                 "AllowStorageCommitment": False},
    }
    for bad in ({"aet": "MR3T", "host": "mr.hospital.example"}, {"aet": "MR3T"}, {"aet": "A" * 17, "host": "10.0.0.1"},
                {"aet": "MR3T", "host": "10.0.0.1", "allowEverything": True}):
        values["orthanc"]["dicomModalities"] = {"bad": bad}
        with pytest.raises(helm.HelmError):
            chart().validate_schema(values)
            render(values)


if os.environ.get("GLIOSCOPE_CHART_DUMP"):  # debugging aid: GLIOSCOPE_CHART_DUMP=1 pytest -s
    print(yaml.safe_dump_all(render_scenario("default")))
