"""Keystone sessions for a target: inline ``auth:`` (any keystoneauth1 plugin, secrets from ``*_file`` keys),
``cloud:`` (clouds.yaml) or the ``OS_*`` environment, always through keystoneauth1's loading API."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading
from keystoneauth1 import session as ks_session

from imagesync.config.settings import TargetSettings
from imagesync.errors import ConfigError
from imagesync.util import redact

_CLOUDS_PATHS = (Path("clouds.yaml"), Path.home() / ".config/openstack/clouds.yaml", Path("/etc/openstack/clouds.yaml"))


@dataclass(frozen=True)
class AuthSpec:
    auth_type: str
    options: dict[str, str] = field(repr=False)
    region: str | None
    interface: str
    verify: bool | str
    timeout: float | None = None  # seconds per call; None waits forever, so spec_for always sets it

    def session(self, *, project_id: str | None = None, project_name: str | None = None,
                project_domain: str | None = None) -> ks_session.Session:
        """A session with this identity, optionally re-scoped to ``project_id`` or to ``project_name`` in
        ``project_domain`` (a domain name; default: the domain of the configured project). Raises ConfigError."""
        options = dict(self.options)
        if project_id is not None or project_name is not None:
            domain = self._project_domain(project_domain)
            for key in ("project_id", "project_name", "project_domain_name", "project_domain_id", "tenant_name",
                        "tenant_id"):
                options.pop(key, None)
            options.update({"project_id": project_id} if project_id is not None
                           else {"project_name": project_name or "", **domain})
        loader: Any = loading.get_plugin_loader(self.auth_type)
        try:
            plugin = loader.load_from_options(**options)
        except ks_exc.MissingRequiredOptions as exc:
            names = ", ".join(o.dest for o in exc.options)
            raise ConfigError(f"auth ({self.auth_type}) lacks {names}") from None
        return ks_session.Session(auth=plugin, verify=self.verify, user_agent="imagesync", timeout=self.timeout)


    def _project_domain(self, name: str | None) -> dict[str, str]:
        if name:
            return {"project_domain_name": name}
        for key in ("project_domain_id", "project_domain_name", "user_domain_id", "user_domain_name"):
            if self.options.get(key):
                return {key.replace("user_", "project_"): self.options[key]}
        return {"project_domain_id": "default"}


def spec_for(target: TargetSettings) -> AuthSpec:
    """The identity a target uses (inline auth, a clouds.yaml entry, or the OS_* environment) and its timeout.
    Raises ConfigError."""
    return replace(_identity(target), timeout=target.timeout)


def _identity(target: TargetSettings) -> AuthSpec:
    where = f"targets.{target.name}"
    if target.auth:
        raw = dict(target.auth)
        auth_type = raw.pop("auth_type", "password")
        cacert = raw.pop("cacert", None)
        return _spec(auth_type, _inline(raw, where), target.region, target.interface, cacert=cacert, where=where)
    if target.cloud:
        return _cloud(target, where)
    return _environment(target, where)


def _inline(raw: dict[str, str], where: str) -> dict[str, str]:
    """Plugin options from ``auth:``, each ``<option>_file`` (a file's text) and ``<option>_env`` (an environment
    variable's value) giving ``<option>``: client_secret_file, application_credential_secret_env, password_file...
    Raises ConfigError naming the key when the file cannot be read or the variable is unset or empty."""
    options: dict[str, str] = {}
    for key, value in raw.items():
        name, secret = key, value
        if key.endswith("_file"):
            name = key.removesuffix("_file")
            try:
                secret = Path(value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{where}.auth.{key}: cannot read {value}: {exc.strerror}") from None
        elif key.endswith("_env"):
            name, secret = key.removesuffix("_env"), os.environ.get(value, "")
            if not secret:
                raise ConfigError(f"{where}.auth.{key}: environment variable {value} is not set or empty")
        options[name] = secret
    redact.register_options(options)
    return options


def _spec(auth_type: str, options: dict[str, str], region: str | None, interface: str | None, *,
          cacert: str | None, where: str) -> AuthSpec:
    try:
        loader: Any = loading.get_plugin_loader(auth_type)
    except ks_exc.NoMatchingPlugin:
        raise ConfigError(f"{where}: unknown auth_type {auth_type!r}") from None
    known = {o.dest for o in loader.get_options()}
    unknown = sorted(set(options) - known - {"cacert"})
    if unknown:
        raise ConfigError(f"{where}.auth.{unknown[0]}: not an option of auth_type {auth_type} "
                          f"(allowed: {', '.join(sorted(known))})")
    options.pop("cacert", None)
    return AuthSpec(auth_type=auth_type, options=options, region=region, interface=interface or "public",
                    verify=cacert or True)


def _cloud(target: TargetSettings, where: str) -> AuthSpec:
    paths = [Path(p) for p in (os.environ.get("OS_CLIENT_CONFIG_FILE"),) if p] + list(_CLOUDS_PATHS)
    for path in paths:
        if path.is_file():
            clouds = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("clouds", {})
            if target.cloud in clouds:
                entry: dict[str, Any] = clouds[target.cloud]
                options = {k: str(v) for k, v in (entry.get("auth") or {}).items()}
                redact.register_options(options)
                cacert = entry.get("cacert") or (None if entry.get("verify", True) else False)
                spec = _spec(entry.get("auth_type", "password"), options, target.region or entry.get("region_name"),
                             target.interface or entry.get("interface"), cacert=None, where=where)
                return AuthSpec(spec.auth_type, spec.options, spec.region, spec.interface,
                                cacert if cacert is not None else True)
    raise ConfigError(f"{where}.cloud: no cloud {target.cloud!r} in {', '.join(str(p) for p in paths)}")


def _environment(target: TargetSettings, where: str) -> AuthSpec:
    env = os.environ
    if not env.get("OS_AUTH_URL"):
        raise ConfigError(f"{where}: no auth, no cloud and no OS_AUTH_URL in the environment")
    auth_type = env.get("OS_AUTH_TYPE") or ("v3applicationcredential" if env.get("OS_APPLICATION_CREDENTIAL_ID")
                                            else "v3token" if env.get("OS_TOKEN") else "password")
    loader: Any = loading.get_plugin_loader(auth_type)
    options = {o.dest: env[f"OS_{o.dest.upper()}"] for o in loader.get_options() if env.get(f"OS_{o.dest.upper()}")}
    redact.register_options(options)
    return _spec(auth_type, options, target.region or env.get("OS_REGION_NAME"),
                 target.interface or env.get("OS_INTERFACE"), cacert=env.get("OS_CACERT"), where=where)
