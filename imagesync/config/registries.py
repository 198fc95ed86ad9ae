"""``registries:`` (DESIGN §9): OCI registries as a second kind of source beside ``lists:``.

Each entry becomes one frozen :class:`RegistrySettings`. The rules are those of lists: every key is checked here,
once, so a run never starts with a registry it cannot follow; secrets are registered with the redactor as they are
read. The signature mode has no default on purpose: trusting unsigned artifacts must be written out.

Keyless cosign verification is not supported yet. When it comes it stays ``signature: cosign`` and adds
``cosign_identities: [{issuer: ..., subject: ...}]`` (Fulcio certificate identities) instead of or besides
``cosign_keys``; nothing is reserved for it now, and the rule "cosign needs keys" will then read "cosign needs
keys or identities".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from imagesync.config.read import Section
from imagesync.errors import ConfigError
from imagesync.util import redact

RegistrySignature = Literal["cosign", "none"]
SIGNATURES: tuple[RegistrySignature, ...] = ("cosign", "none")

# The OCI distribution spec's grammar for repository names and tags; an entry outside it can never match.
_REPOSITORY = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_IMAGE = re.compile(rf"(?P<repository>{_REPOSITORY}):(?P<tag>{_TAG})")
# Harbor's own rule for project names (lower case, digits and single '.', '_', '-' between them).
_HARBOR_PROJECT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    """One registry under ``registries:``; ``name`` shares one namespace with the list names."""

    name: str
    url: str  # https://host[:port], nothing else
    harbor_project: str | None = None  # exactly one of harbor_project / repositories
    repositories: tuple[str, ...] = ()
    tag_pattern: str | None = None  # matched with re.search (anchor it with ^ and $); None: every tag
    images: tuple[str, ...] = ()  # "<repository>:<tag>" with the full repository path; empty: all
    required_annotation: str | None = None
    username: str | None = None
    # repr=False: a Settings object printed in a traceback must not leak the secrets.
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # a bearer token, sent as is
    signature: RegistrySignature
    cosign_keys: tuple[Path, ...] = ()
    vos: tuple[str, ...] = ()
    prefix: str = ""
    enabled: bool = True
    kind: str = field(default="oci", init=False)  # the kind of source, for reports


def read(root: Section, base: Path) -> tuple[RegistrySettings, ...]:
    """The ``registries:`` mapping of ``root``; paths relative to ``base``. Raises ConfigError."""
    return tuple(_registry(sec, base) for sec in root.named_sections("registries"))


def check_names(registries: Iterable[RegistrySettings], list_names: Iterable[tuple[str, str]], *,
                source: Path) -> None:
    """Refuse a registry named like a list (``list_names``: name and URL of each list): both are sources, and
    state and reports know a source by its name alone. Raises ConfigError naming both."""
    urls = dict(list_names)
    for registry in registries:
        if registry.name in urls:
            raise ConfigError(
                f"registries.{registry.name}: the name {registry.name} is also the name of list {registry.name} "
                f"({redact.url(urls[registry.name])}); lists and registries share one set of source names",
                subject=str(source),
                hint="rename the registry, or give the list another name under lists:")


def _registry(sec: Section, base: Path) -> RegistrySettings:
    # Everything is read (and each value's type checked) before finish(), and relations between keys only after
    # it: a misspelt "signatur:" then gets "did you mean signature?" rather than "signature: required".
    signature = _signature(sec)
    vo = sec.string("vo") if sec.has("vo") else None
    vos = sec.string_list("vos") if sec.has("vos") else None
    result = RegistrySettings(
        name=sec.name, url=_url(sec), harbor_project=sec.string("harbor_project"),
        repositories=sec.string_list("repositories"), tag_pattern=_pattern(sec), images=sec.string_list("images"),
        required_annotation=sec.string("required_annotation"), username=sec.string("username"),
        password=_secret(sec, "password", base), token=_secret(sec, "token", base),
        signature=signature or "none",  # a placeholder only when missing, which _check_signature refuses below
        cosign_keys=tuple(sec.resolve("cosign_keys", p, base) for p in sec.string_list("cosign_keys")),
        prefix=sec.string("prefix") or "", enabled=sec.boolean("enabled", True))
    sec.finish()
    _check_signature(sec, signature, result.cosign_keys)
    _check_what(sec, result)
    _check_credentials(sec, result)
    return _with_vos(sec, result, vo, vos)


def _url(sec: Section) -> str:
    value = (sec.string("url", required=True) or "").strip()
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        sec.fail("url", f"{redact.url(value)!r} is not a valid URL")
    if parts.username is not None or parts.password is not None:
        sec.fail("url", "credentials do not belong in the URL (use username and password_file)")
    if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query or parts.fragment:
        sec.fail("url", f"{value!r} is not a registry base URL: expected https://host[:port] (https only, no path; "
                 "the repositories go under harbor_project or repositories)")
    return f"https://{parts.netloc}"


def _signature(sec: Section) -> RegistrySignature | None:
    # Missing and empty (``signature:``) are alike: no choice was written; refused after finish().
    value = sec.string("signature")
    if value is not None and value not in SIGNATURES:
        sec.fail("signature", f"{value!r} is not allowed (allowed: {', '.join(SIGNATURES)})")
    return value


def _pattern(sec: Section) -> str | None:
    pattern = sec.string("tag_pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            sec.fail("tag_pattern", f"{pattern!r} is not a valid regular expression ({exc})")
    return pattern


def _secret(sec: Section, stem: str, base: Path) -> str | None:
    """``stem``, ``stem_file`` or ``stem_env``, at most one of them; the value is registered with the redactor."""
    keys = [key for key in (stem, f"{stem}_file", f"{stem}_env") if sec.has(key)]
    if len(keys) > 1:
        sec.fail(keys[0], f"give the {stem} only once (found: {', '.join(keys)})")
    if not keys:
        return None
    key = keys[0]
    value = sec.secret_file(key, base) if key.endswith("_file") else (
        sec.secret_env(key) if key.endswith("_env") else sec.string(key))
    if not value:
        sec.fail(key, "empty")
    redact.register(value)
    return value


def _check_signature(sec: Section, signature: RegistrySignature | None, keys: tuple[Path, ...]) -> None:
    if signature is None:
        sec.fail("signature", "required: write signature: cosign (with cosign_keys) or signature: none "
                 "(artifacts are then taken unsigned, and marked UNSIGNED in every report)")
    if signature == "none" and keys:
        sec.fail("cosign_keys", "not used with signature: none (write signature: cosign to verify with them)")
    if signature == "cosign" and not keys:
        sec.fail("cosign_keys", "required with signature: cosign (the public keys that sign the artifacts)")
    for path in keys:
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            sec.fail("cosign_keys", f"cannot read {path}: {exc.strerror}")


def _check_what(sec: Section, result: RegistrySettings) -> None:
    """Which repositories and tags to follow: harbor_project xor repositories, and images inside them."""
    if result.harbor_project is not None and result.repositories:
        sec.fail("harbor_project", "give harbor_project or repositories, not both")
    if result.harbor_project is None and not result.repositories:
        sec.fail("repositories", "required: name the repositories to follow, or a Harbor project with harbor_project")
    if result.harbor_project is not None and not re.fullmatch(_HARBOR_PROJECT, result.harbor_project):
        sec.fail("harbor_project", f"{result.harbor_project!r} is not a Harbor project name")
    for repository in result.repositories:
        if not re.fullmatch(_REPOSITORY, repository):
            sec.fail("repositories", f"{repository!r} is not a repository name (lower case, e.g. vm/ubuntu)")
    for image in result.images:
        _check_image(sec, result, image)
    if result.required_annotation == "":
        sec.fail("required_annotation", "empty (leave it out to require no annotation)")


def _check_image(sec: Section, result: RegistrySettings, image: str) -> None:
    # An entry that cannot match what the registry is told to follow would be skipped silently for ever.
    match = _IMAGE.fullmatch(image)
    if match is None:
        sec.fail("images", f"{image!r} is not <repository>:<tag> (e.g. egi_vm_images/ubuntu:22.04)")
    repository, tag = match.group("repository", "tag")
    if result.harbor_project is not None and not repository.startswith(f"{result.harbor_project}/"):
        sec.fail("images", f"{image!r} is not in Harbor project {result.harbor_project} "
                 f"(write the full repository path: {result.harbor_project}/...)")
    if result.repositories and repository not in result.repositories:
        sec.fail("images", f"{image!r}: {repository} is not one of the repositories")
    if result.tag_pattern is not None and not re.search(result.tag_pattern, tag):
        sec.fail("images", f"{image!r}: tag {tag} does not match tag_pattern {result.tag_pattern!r}")


def _check_credentials(sec: Section, result: RegistrySettings) -> None:
    if result.password is not None and result.token is not None:
        sec.fail("token", "give a password or a token, not both")
    if result.password is not None and result.username is None:
        sec.fail("username", "required with a password")


def _with_vos(sec: Section, result: RegistrySettings, vo: str | None, vos: tuple[str, ...] | None) -> RegistrySettings:
    if vo is not None and vos is not None:
        sec.fail("vos", "give vo (one) or vos (a list), not both")
    chosen = (vo,) if vo is not None else vos or ()
    if any(not item.strip() for item in chosen):
        sec.fail("vo" if vo is not None else "vos", "a VO name cannot be empty")
    if not chosen and result.harbor_project is not None:
        # A Harbor project named like a VO holds that VO's images (registry.egi.eu's convention).
        chosen = (result.harbor_project,)
    return replace(result, vos=chosen)


__all__ = ["SIGNATURES", "RegistrySettings", "RegistrySignature", "check_names", "read"]


def source_names(list_names: Iterable[str], registries: Iterable[RegistrySettings]) -> list[str]:
    """Every name ``--list`` may give: the lists', the registries', and ``<registry>@<vo>`` for a registry of
    several VOs (one source per VO). Raises nothing."""
    names = list(list_names)
    for item in registries:
        names.append(item.name)
        if len(item.vos) > 1:
            names += [f"{item.name}@{vo}" for vo in item.vos]
    return names
