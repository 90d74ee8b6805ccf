"""routing.* values (result routing and processing rules) reach the gateway as settings it accepts."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter
from render import render, render_scenario, scenario_values

from glioscope_gateway.routing.config import Destination, ProcessingRule


def gateway_env(objects: list[dict]) -> dict[str, dict]:
    gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway"))
    return {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_destinations_and_rules_render_as_valid_settings() -> None:
    objects = render_scenario("routing")
    env = gateway_env(objects)
    destinations = TypeAdapter(list[Destination]).validate_json(env["GLIOSCOPE_DESTINATIONS"]["value"])
    assert [(d.name, d.protocol, d.on, d.what) for d in destinations] == [
        ("hospital-pacs", "dimse", "completed", ["seg"]), ("hospital-pacs-reports", "dicomweb", "signed", ["sr", "pdf"])]
    [rule] = TypeAdapter(list[ProcessingRule]).validate_json(env["GLIOSCOPE_PROCESSING_RULES"]["value"])
    assert rule.calling_aet == ["MR-SCANNER-1", "MR-SCANNER-2"] and rule.modality == ["MR"]
    assert env["GLIOSCOPE_ROUTING_RETRY_BASE_S"]["value"] == "60"
    egress = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("routing-egress"))
    assert egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"


def test_defaults_route_nothing_and_process_everything() -> None:
    env = gateway_env(render_scenario("default"))
    assert "GLIOSCOPE_DESTINATIONS" not in env and "GLIOSCOPE_PROCESSING_RULES" not in env
    assert not any(o["metadata"]["name"].endswith("routing-egress") for o in render_scenario("default"))


def test_destinations_with_passwords_come_from_the_secret() -> None:
    values = scenario_values("routing")
    values["routing"]["destinationsSecretKey"] = "destinations"
    env = gateway_env(render(values))
    assert env["GLIOSCOPE_DESTINATIONS"]["valueFrom"]["secretKeyRef"]["key"] == "destinations"


@pytest.mark.parametrize("bad", [
    {"routing": {"destinations": [{"name": "x", "protocol": "ftp"}]}},
    {"routing": {"destinations": [{"name": "x", "protocol": "dimse", "on": "printed"}]}},
    {"routing": {"destinations": [{"name": "x", "protocol": "dicomweb", "password": "in-values"}]}},
    {"routing": {"rules": [{"modality": "MR", "colour": "red"}]}},
])
def test_schema_refuses_bad_routing_values(bad: dict) -> None:
    import helm_python as helm
    from render import chart

    with pytest.raises(helm.HelmError):
        chart().validate_schema(bad)
