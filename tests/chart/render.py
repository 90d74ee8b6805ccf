"""Render charts/glioscope offline with the Helm v4 SDK embedded in helm-python-sdk (no helm binary)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "glioscope"
SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
RELEASE = "gs"
NAMESPACE = "glioscope"


@functools.cache
def chart():  # type: ignore[no-untyped-def]
    import helm_python as helm

    helm.disable_logging()
    return helm.Chart.load(CHART)


def scenario_values(name: str) -> dict[str, Any]:
    return yaml.safe_load(SCENARIOS[name].read_text()) or {}


def render(values: dict[str, Any] | None = None, *, upgrade: bool = False) -> list[dict[str, Any]]:
    """Every object the chart renders (NOTES.txt excluded), in template order."""
    manifests = chart().render(
        values or {}, name=RELEASE, namespace=NAMESPACE, is_install=not upgrade, is_upgrade=upgrade
    )
    objects: list[dict[str, Any]] = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(manifests[path]):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["__template__"] = path
                objects.append(doc)
    return objects


@functools.cache
def _render_scenario(name: str) -> str:
    return yaml.safe_dump_all(render(scenario_values(name)))


def render_scenario(name: str) -> list[dict[str, Any]]:
    """Cached per scenario; a fresh copy each call."""
    return list(yaml.safe_load_all(_render_scenario(name)))


POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in POD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def containers(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, container) for init and app containers of a workload."""
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [("init", c) for c in spec.get("initContainers", [])] + [("app", c) for c in spec.get("containers", [])]


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
