"""k8s/: the overlays render with `kubectl kustomize`, every object is valid, and none copies a chart object."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import require_binary, require_module

from render import ROOT, render_scenario

OVERLAYS = ["dev", "prod"]


def kustomize(overlay: str) -> list[dict]:
    kubectl = require_binary("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_valid_objects(overlay: str) -> None:
    objects = kustomize(overlay)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Namespace", "PriorityClass", "PriorityClass", "RuntimeClass"]
    kv = require_module("kubernetes_validate")
    for o in objects:
        kv.validate(o, "1.31", strict=True)
        assert o["metadata"]["labels"]["glioscope.io/environment"] == overlay
    chart_objects = {(o["kind"], o["metadata"]["name"]) for o in render_scenario("gpu")}
    assert not chart_objects & {(o["kind"], o["metadata"]["name"]) for o in objects}
    runtime = next(o for o in objects if o["kind"] == "RuntimeClass")
    assert runtime["metadata"]["name"] == "nvidia" and runtime["handler"] == "nvidia"


def test_chart_refers_to_the_k8s_objects() -> None:
    """The runtime class the chart's Triton uses is the one k8s/ defines; priority classes exist."""
    objects = kustomize("prod")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    triton = next(o for o in render_scenario("gpu") if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "triton")
    assert ("RuntimeClass", triton["spec"]["template"]["spec"]["runtimeClassName"]) in names
    assert {("PriorityClass", "glioscope-critical"), ("PriorityClass", "glioscope-batch")} <= names
