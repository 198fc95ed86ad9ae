"""What a request to imagesync listen names: registry envelopes, Harbor webhooks and /v1/sync bodies, mapped
to the configured sources (imagesync.listen.events)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from imagesync.config.registries import RegistrySettings
from imagesync.listen.events import BadEvent, Change, harbor_changes, registry_changes, sources_for, sync_request

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PLAIN = RegistrySettings(name="plain", url="https://127.0.0.1:5000", repositories=("vm/alpine",), signature="none")
HARBOR = RegistrySettings(name="egi", url="https://registry.egi.eu", harbor_project="egi_vm_images",
                          signature="none")


def event(action: str = "push", media_type: str | None = MANIFEST, host: str | None = "127.0.0.1:5000",
          **target: str) -> dict[str, Any]:
    made: dict[str, Any] = {"action": action, "target": {"repository": "vm/alpine", **target}}
    if media_type is not None:
        made["target"]["mediaType"] = media_type
    if host is not None:
        made["request"] = {"host": host, "method": "PUT"}
    return made


@pytest.mark.parametrize(("events", "expected"), [
    pytest.param([event(tag="1.0")], [Change("127.0.0.1:5000", "vm/alpine")], id="manifest push"),
    pytest.param([event(media_type="application/octet-stream")], [], id="blob push: not an artifact yet"),
    pytest.param([event("pull", tag="1.0")], [], id="pull"),
    pytest.param([event("delete", media_type=None)], [Change("127.0.0.1:5000", "vm/alpine")], id="delete"),
    pytest.param([event(media_type="application/vnd.oci.image.index.v1+json")],
                 [Change("127.0.0.1:5000", "vm/alpine")], id="index push"),
    pytest.param([event(host=None, tag="1")], [Change(None, "vm/alpine")], id="no request host"),
])
def test_registry_notifications(events: list[dict[str, Any]], expected: list[Change]) -> None:
    assert registry_changes({"events": events}) == expected


@pytest.mark.parametrize(("body", "problem"), [
    ([], "the body: expected a JSON object"),
    ({"events": {}}, "expected a notification envelope"),
    ({"events": ["x"]}, "events[0]: expected a JSON object"),
    ({"events": [{"action": "push", "target": {"mediaType": MANIFEST}}]}, "events[0].target.repository"),
])
def test_malformed_registry_notifications_are_refused(body: object, problem: str) -> None:
    with pytest.raises(BadEvent, match=problem.replace("[", r"\[").replace("]", r"\]")):
        registry_changes(body)


def harbor(kind: str = "PUSH_ARTIFACT") -> dict[str, Any]:
    return {"type": kind, "occur_at": 1764460800, "operator": "robot$ci", "event_data": {
        "resources": [{"digest": "sha256:ab", "tag": "24.04",
                       "resource_url": "registry.egi.eu/egi_vm_images/ubuntu:24.04"}],
        "repository": {"name": "ubuntu", "namespace": "egi_vm_images", "repo_full_name": "egi_vm_images/ubuntu",
                       "repo_type": "public"}}}


def test_harbor_webhooks() -> None:
    assert harbor_changes(harbor()) == [Change("registry.egi.eu", "egi_vm_images/ubuntu")]
    assert harbor_changes(harbor("DELETE_ARTIFACT")) == [Change("registry.egi.eu", "egi_vm_images/ubuntu")]
    assert harbor_changes(harbor("PULL_ARTIFACT")) == []
    # The same payload in Harbor's CloudEvents format. Before: answered 200 and ignored.
    cloud = {"specversion": "1.0", "type": "harbor.artifact.pushed", "source": "/projects/1/webhook/policies/2",
             "data": harbor()["event_data"]}
    assert harbor_changes(cloud) == [Change("registry.egi.eu", "egi_vm_images/ubuntu")]
    assert harbor_changes({**cloud, "type": "harbor.artifact.deleted"}) == harbor_changes(cloud)
    assert harbor_changes({**cloud, "type": "harbor.artifact.pulled"}) == []
    with pytest.raises(BadEvent, match=r"data: expected a JSON object"):
        harbor_changes({"type": "harbor.artifact.pushed"})
    with pytest.raises(BadEvent, match=r"event_data\.repository\.repo_full_name"):
        harbor_changes({"type": "PUSH_ARTIFACT", "event_data": {"repository": {}}})
    with pytest.raises(BadEvent, match="Harbor webhook"):
        harbor_changes({"events": []})


@pytest.mark.parametrize(("change", "expected"), [
    (Change("127.0.0.1:5000", "vm/alpine"), ["plain"]),
    (Change(None, "vm/alpine"), ["plain"]),
    (Change("127.0.0.1:5001", "vm/alpine"), []),  # another registry's repository of the same name
    (Change("127.0.0.1:5000", "vm/other"), []),
    (Change("registry.egi.eu:443", "egi_vm_images/ubuntu"), ["egi"]),
    (Change("REGISTRY.egi.eu", "egi_vm_images/ubuntu"), ["egi"]),
    (Change("registry.egi.eu", "egi_vm_images2/ubuntu"), []),
])
def test_the_sources_an_event_concerns(change: Change, expected: list[str]) -> None:
    assert sources_for([change], [PLAIN, HARBOR]) == expected


def test_a_disabled_registry_is_never_synced_by_an_event() -> None:
    assert sources_for([Change(None, "vm/alpine")], [replace(PLAIN, enabled=False)]) == []


def test_sync_requests() -> None:
    assert sync_request({"source": "demo"}, ["demo", "egi"]) == "demo"
    with pytest.raises(LookupError, match="no source named 'other'"):
        sync_request({"source": "other"}, ["demo"])
    for body in ({}, {"source": 3}, {"source": ""}, ["demo"]):
        with pytest.raises(BadEvent):
            sync_request(body, ["demo"])
