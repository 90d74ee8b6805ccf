"""Generate charts/glioscope/values.schema.json from values.yaml: every object is closed
(additionalProperties: false) except the Kubernetes pass-through maps, types come from the defaults,
and a few keys get enums/patterns. `python tests/chart/schema_gen.py` rewrites the file; a test checks it
is up to date."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "glioscope"

# Kubernetes objects passed through verbatim (validated by the API server, not by us).
FREE_OBJECTS = {"nodeSelector", "affinity", "annotations", "commonLabels", "requests", "limits",
                "ingressControllerNamespaceSelector", "monitoringNamespaceSelector", "kedaNamespaceSelector"}
FREE_LISTS = {"tolerations", "extraEnv", "imagePullSecrets", "extraEgress", "egress", "dicomPeers"}
OVERRIDES: dict[str, dict[str, Any]] = {
    "environment": {"type": "string", "enum": ["production", "test", "development"]},
    "gateway.jobQueue": {"type": "string", "enum": ["cpu", "gpu", "io"]},
    "triton.models.source": {"type": "string", "enum": ["image", "pvc"]},
    "triton.placement": {"type": "string", "enum": ["deployment", "sidecar"]},
    "secrets.existingSecret": {"type": "string", "minLength": 1},
    "triton.gpus": {"type": "integer", "minimum": 1},
    "workers.metricsPort": {"type": "integer", "minimum": 1024, "maximum": 65535},
    "workers.tritonRequestsInFlight": {"type": "integer", "minimum": 1, "maximum": 64},
    "gateway.maxUploadBytes": {"type": "integer", "minimum": 1},
    "gateway.uploadBudgetBytes": {"type": "integer", "minimum": 1},
    "gateway.trustedProxies": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "gateway.watcher.leaderPollSeconds": {"type": "number", "exclusiveMinimum": 0},
    "gateway.watcher.leaderLeaseSeconds": {"type": "number", "exclusiveMinimum": 0},
    "monitoring.release": {"type": "string", "minLength": 1},
    "routing.destinations": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "protocol"],
        "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                       "protocol": {"type": "string", "enum": ["dimse", "dicomweb"]},
                       "on": {"type": "string", "enum": ["completed", "signed"]},
                       "what": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["seg", "sr", "pdf"]}},
                       "url": {"type": "string"}, "username": {"type": "string"},
                       "aet": {"type": "string", "minLength": 1, "maxLength": 16}, "host": {"type": "string", "minLength": 1},
                       "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                       "calling_aet": {"type": "string", "minLength": 1, "maxLength": 16},
                       "timeout_s": {"type": "number", "exclusiveMinimum": 0}}}},
    "routing.rules": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "process": {"type": "boolean"},
                       **{k: {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
                          for k in ("calling_aet", "modality", "project")},
                       "study_description": {"type": "string"}, "series_description": {"type": "string"}}}},
    "routing.retryBaseSeconds": {"type": "number", "exclusiveMinimum": 0},
    "routing.retryMaxSeconds": {"type": "number", "exclusiveMinimum": 0},
    "routing.maxAttempts": {"type": "integer", "minimum": 1},
    "orthanc.dicomModalities": {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": False, "required": ["aet", "host"],
        "properties": {"aet": {"type": "string", "minLength": 1, "maxLength": 16}, "host": {"type": "string", "minLength": 1},
                       "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                       **{k: {"type": "boolean"} for k in ("allowStore", "allowEcho", "allowFind", "allowMove", "allowGet")}}}},
}
QUANTITY = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "number"}]}


def infer(key: str, path: str, value: Any) -> dict[str, Any]:
    if path in OVERRIDES:
        return OVERRIDES[path]
    if key in FREE_OBJECTS:
        return {"type": "object"}
    if key in FREE_LISTS:
        return {"type": "array"}
    if isinstance(value, dict):
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: infer(k, f"{path}.{k}" if path else k, v) for k, v in value.items()},
        }
    if isinstance(value, list):
        item = infer("", f"{path}[]", value[0]) if value else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if key in {"size", "sizeLimit", "shmSize", "tmpSizeLimit"}:
        return QUANTITY
    return {"type": "string"}


def generate() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = infer("", "", values)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "glioscope chart values", **schema}
    return schema


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    target = CHART / "values.schema.json"
    target.write_text(dump(generate()))
    print(f"wrote {target}", file=sys.stderr)
