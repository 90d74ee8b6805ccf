"""Cross-checks between the chart and the code: every development-only setting is set in the
Deployments, and every metric a dashboard or alert uses exists (in the code or in the documented
list of external metrics); promtool checks and unit-tests the rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import require_binary, require_module
from pydantic import SecretStr

from render import CHART, ROOT, SCENARIOS, component, containers, render_scenario

INFRA = ROOT / "infra"

# The rule: a setting must be set explicitly in every Deployment of the service when its default only
# makes sense on a developer machine - a localhost URL, an SQLite/embedded broker URL, the in-process
# inference default, an empty Redis URL (events stay in one process), the development secret, a relative
# or source-tree path, environment=development - or when it switches on embedded-only behaviour
# (migrations at start: a hook Job migrates in Kubernetes; the Orthanc watcher: set explicitly, every gateway
# replica runs it behind leader election).
EMBEDDED_SWITCHES = {"auto_migrate", "migrate_on_start", "orthanc_watcher"}
# Empty means "the embedded way" (not "feature off", as for the optional OIDC URLs).
EMBEDDED_WHEN_EMPTY = {"redis_url"}
# Credentials without a default (empty: none sent, and Orthanc refuses every request; the two keys:
# every service refuses to start without them).
NO_DEFAULT = {"orthanc_password", "service_token", "jwt_secret"}


def development_only(name: str, default: Any) -> bool:
    from glioscope_common.settings import DEVELOPMENT_SECRET

    if name in EMBEDDED_SWITCHES or name in NO_DEFAULT:
        return True
    if isinstance(default, SecretStr):
        return default.get_secret_value() == DEVELOPMENT_SECRET
    if isinstance(default, Path):
        return not default.is_absolute() or str(default).startswith(str(ROOT))
    if isinstance(default, str):
        return (default in {"development", "onnxruntime"} or "127.0.0.1" in default or "localhost" in default
                or default.startswith(("sqlite", "sqla+sqlite")) or (name in EMBEDDED_WHEN_EMPTY and default == ""))
    return False


def settings_classes() -> dict[str, Any]:
    from glioscope_gateway.settings import GatewaySettings
    from glioscope_inference.settings import InferenceSettings
    from glioscope_nifti.settings import Settings as NiftiSettings
    from glioscope_reporting.settings import Settings as ReportingSettings

    return {"gateway": GatewaySettings, "worker": InferenceSettings,
            "reporting": ReportingSettings, "nifti": NiftiSettings}


def required_env(cls: Any) -> set[str]:
    return {f"GLIOSCOPE_{name.upper()}" for name, field in cls.model_fields.items() if development_only(name, field.default)}


def test_the_rule_finds_the_known_development_defaults() -> None:
    from glioscope_common.settings import CommonSettings

    required = required_env(CommonSettings)
    for name in ("DATABASE_URL", "BROKER_URL", "REDIS_URL", "INFERENCE_URL", "DICOMWEB_URL", "ORTHANC_URL",
                 "ORTHANC_PASSWORD", "NIFTI_URL", "REPORTING_URL", "SERVICE_TOKEN", "MODEL_REPOSITORY", "ENVIRONMENT",
                 "DATA_DIR"):
        assert f"GLIOSCOPE_{name}" in required
    assert "GLIOSCOPE_LOG_JSON" not in required and "GLIOSCOPE_MODEL_NAME" not in required


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_development_only_setting_is_set_in_its_deployment(scenario: str) -> None:
    classes = settings_classes()
    seen = set()
    for o in render_scenario(scenario):
        if o["kind"] != "Deployment":
            continue
        comp = component(o)
        key = "worker" if comp.startswith("worker-") else comp
        if key not in classes:
            continue
        seen.add(key)
        cls = classes[key]
        env = {e["name"] for _, c in containers(o) for e in c.get("env", [])}
        missing = required_env(cls) - env
        assert not missing, f"{scenario}: {o['metadata']['name']} does not set {sorted(missing)}"
        # and every GLIOSCOPE_ variable it sets is a real setting (no typos)
        known = {f"GLIOSCOPE_{n.upper()}" for n in cls.model_fields}
        unknown = {n for n in env if n.startswith("GLIOSCOPE_")} - known
        assert not unknown, f"{scenario}: {o['metadata']['name']} sets unknown settings {sorted(unknown)}"
    assert {"gateway", "worker", "reporting", "nifti"} <= seen


def test_production_settings_load_from_the_rendered_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's rendered env (secrets filled in) builds GatewaySettings in production."""
    objects = render_scenario("default")
    gateway = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "gateway")
    secrets = {"DATABASE_PASSWORD": "pw", "RABBITMQ_PASSWORD": "pw", "REDIS_PASSWORD": "pw", "GLIOSCOPE_ORTHANC_USERNAME": "u",
               "GLIOSCOPE_ORTHANC_PASSWORD": "pw", "GLIOSCOPE_SERVICE_TOKEN": "t-0123456789abcdefghijklmnopqrstuvwxyz", "GLIOSCOPE_JWT_SECRET": "j-0123456789abcdefghijklmnopqrstuvwxyz"}
    resolved: dict[str, str] = {}
    for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]:
        value = secrets.get(e["name"], e.get("value", ""))
        resolved[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: resolved.get(m.group(1), m.group(0)), value)
    for name, value in resolved.items():
        monkeypatch.setenv(name, value)
    settings = settings_classes()["gateway"]()
    assert settings.environment == "production"
    assert settings.database_url == "postgresql+psycopg://glioscope:pw@gs-glioscope-postgresql:5432/glioscope"
    # Orthanc's credentials are settings of their own, never in its URLs (which reach messages and logs).
    assert settings.dicomweb_url == "http://gs-glioscope-orthanc:8042/dicom-web"
    assert settings.orthanc_url == "http://gs-glioscope-orthanc:8042" and settings.orthanc_auth == ("u", "pw")
    assert settings.auto_migrate is False and settings.orthanc_watcher is True
    assert settings.watcher_leader_poll_s == 2 and settings.watcher_leader_lease_s == 10


# --- metric names --------------------------------------------------------------------------------

EXTERNAL_METRICS = {  # documented in infra/README.md
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count", "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes", "rabbitmq_queue_messages_ready", "rabbitmq_queue_consumers",
    "kube_pod_container_status_ready", "up", "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_capacity_bytes", "certmanager_certificate_expiration_timestamp_seconds",
}
EXTERNAL_PREFIXES = ("orthanc_",)
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan", "le"}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                      # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                     # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def code_metrics() -> set[str]:
    names = set()
    pattern = re.compile(r"(?:Counter|Histogram|Gauge|Summary|MetricFamily)\(\s*\"([a-zA-Z_:][\w:]*)\"")
    for path in (ROOT / "services").rglob("*.py"):
        if "/tests/" in str(path):
            continue
        names |= set(pattern.findall(path.read_text()))
    return names


def exists(name: str, defined: set[str]) -> bool:
    if name in EXTERNAL_METRICS or name.startswith(EXTERNAL_PREFIXES):
        return True
    base = re.sub(r"_(bucket|sum|count|created)$", "", name)
    return name in defined or base in defined or (name.endswith("_total") and name[:-6] in defined)


def dashboard_exprs() -> list[tuple[str, str]]:
    exprs = []
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                exprs.append((f"{path.name}: {panel['title']}", target["expr"]))
    return exprs


def rule_exprs() -> list[tuple[str, str]]:
    import yaml

    exprs = []
    for path in sorted((INFRA / "prometheus" / "rules").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                exprs.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return exprs


def test_metric_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y"}[5m]))) > 600') == {"a_bucket"}
    assert metric_names("b > 0 and on(queue) c == 0") == {"b", "c"}


def test_every_metric_in_dashboards_and_alerts_exists() -> None:
    defined = code_metrics()
    assert {"glioscope_jobs_total", "glioscope_job_stage_seconds", "glioscope_upload_to_result_seconds",
            "glioscope_inference_seconds", "glioscope_queue_depth", "glioscope_jobs_current",
            "glioscope_http_request_duration_seconds", "glioscope_http_errors_total", "glioscope_watcher_leader",
            "glioscope_job_oldest_queued_seconds"} <= defined
    exprs = dashboard_exprs() + rule_exprs()
    assert len(exprs) > 10
    for where, expr in exprs:
        for name in metric_names(expr):
            assert exists(name, defined), f"{where}: metric {name} is neither in services/ nor a documented external metric"


def test_dashboards_are_valid_grafana_json() -> None:
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in (INFRA / "prometheus" / "rules").glob("*.yaml"))
    result = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in (INFRA / "prometheus" / "tests").glob("*.yaml"))
    assert files
    result = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
