"""What a request to ``imagesync listen`` asks for: the names of the sources to sync, from its JSON body.

Three shapes come in:

- ``POST /v1/sync`` ``{"source": NAME}``: a list publisher or an admin names the source (a list or a registry);
- ``POST /v1/events/registry``: docker-registry's notification envelope, ``{"events": [{"action", "target":
  {"repository", "tag", "mediaType", ...}, "request": {"host", ...}}, ...]}``. The registry sends one event per
  blob and per manifest, for pulls too; only pushes and deletes of manifests (and deletes, which carry no media
  type) can change what a source offers;
- ``POST /v1/events/harbor``: a Harbor webhook, ``{"type": "PUSH_ARTIFACT" | "DELETE_ARTIFACT", "event_data":
  {"repository": {"namespace", "repo_full_name"}, "resources": [{"resource_url", ...}]}}``, or the same payload
  under ``data`` with the CloudEvents format's types ``harbor.artifact.pushed`` / ``harbor.artifact.deleted``.

An event names a registry host and a repository; the sources it concerns are the enabled registries with that
host whose repositories include it (an explicit ``repositories:`` entry, or the ``harbor_project`` it lives in).
An event about nothing configured is accepted and changes nothing: registries notify about every repository.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from imagesync.config.registries import RegistrySettings

_REGISTRY_ACTIONS = ("push", "delete")
# Harbor's payload formats: "Default" (type PUSH_ARTIFACT, payload under event_data) and "CloudEvents" (type
# harbor.artifact.pushed, payload under data); the payload itself is the same.
_HARBOR_TYPES = {"PUSH_ARTIFACT": "event_data", "DELETE_ARTIFACT": "event_data",
                 "harbor.artifact.pushed": "data", "harbor.artifact.deleted": "data"}


class BadEvent(ValueError):
    """The body is not the shape its endpoint takes; the message says what is wrong, in one line."""


@dataclass(frozen=True)
class Change:
    """A repository of a registry that changed: ``host`` as ``host[:port]``, None when the sender did not say."""

    host: str | None
    repository: str


def sync_request(doc: object, known: Sequence[str]) -> str:
    """The source ``{"source": NAME}`` names. Raises BadEvent for another shape, LookupError for a name not in
    ``known``."""
    body = _mapping(doc, "the body")
    name = body.get("source")
    if not isinstance(name, str) or not name:
        raise BadEvent('expected {"source": NAME}')
    if name not in known:
        raise LookupError(f"no source named {name!r}")
    return name


def registry_changes(doc: object) -> list[Change]:
    """The repositories a docker-registry notification envelope reports pushed to or deleted from. Raises
    BadEvent."""
    events = _mapping(doc, "the body").get("events")
    if not isinstance(events, list):
        raise BadEvent('expected a notification envelope {"events": [...]}')
    changes = []
    for index, raw in enumerate(events):
        event = _mapping(raw, f"events[{index}]")
        target = _mapping(event.get("target"), f"events[{index}].target")
        if event.get("action") not in _REGISTRY_ACTIONS or not _is_manifest(event["action"], target):
            continue
        request = event.get("request")
        host = request.get("host") if isinstance(request, dict) else None
        changes.append(Change(host=host if isinstance(host, str) and host else None,
                              repository=_string(target, "repository", f"events[{index}].target")))
    return changes


def harbor_changes(doc: object) -> list[Change]:
    """The repository a Harbor webhook reports an artifact pushed to or deleted from (none for other event
    types). Raises BadEvent."""
    body = _mapping(doc, "the body")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise BadEvent('expected a Harbor webhook {"type": ..., "event_data": {...}}')
    if kind not in _HARBOR_TYPES:
        return []
    key = _HARBOR_TYPES[kind]
    data = _mapping(body.get(key), key)
    repository = _string(_mapping(data.get("repository"), f"{key}.repository"), "repo_full_name",
                         f"{key}.repository")
    resources = data.get("resources")
    urls = [r.get("resource_url") for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []
    hosts = {u.split("/", 1)[0] for u in urls if isinstance(u, str) and "/" in u}
    return [Change(host=host, repository=repository) for host in sorted(hosts)] or [Change(None, repository)]


def sources_for(changes: Iterable[Change], registries: Sequence[RegistrySettings]) -> list[str]:
    """The names of the enabled registries ``changes`` concern, each once, in configuration order. Pure."""
    changes = list(changes)
    return [r.name for r in registries if r.enabled and any(_concerns(r, c) for c in changes)]


def _concerns(registry: RegistrySettings, change: Change) -> bool:
    if change.host is not None and _netloc(change.host) != _netloc(urlsplit(registry.url).netloc):
        return False
    if registry.harbor_project is not None:
        return change.repository.startswith(registry.harbor_project + "/")
    return change.repository in registry.repositories


def _netloc(netloc: str) -> str:
    # "host" and "host:443" are one registry: its URL is https only.
    host = netloc.lower()
    return host[:-4] if host.endswith(":443") else host


def _is_manifest(action: str, target: Mapping[str, Any]) -> bool:
    # A delete names a manifest by digest, without a media type; a push of a blob is not a new artifact yet.
    media_type = target.get("mediaType")
    manifest = isinstance(media_type, str) and ("manifest" in media_type or "image.index" in media_type)
    return action == "delete" or manifest or "tag" in target


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadEvent(f"{where}: expected a JSON object")
    return value


def _string(body: Mapping[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadEvent(f"{where}.{key}: expected a non-empty string")
    return value
