"""An OCI registry (a Harbor project, or named repositories of any registry) as a
:class:`~imagesync.sources.base.Source`: the ``oci`` entry point of the group ``imagesync.sources``.

Each followed tag is one image (:mod:`imagesync.sources.oci.artifact`). Invariant 1 holds as for lists: a registry
that cannot be listed fails as a whole and nothing of it retires; an artifact that cannot be read or verified is
kept as the targets hold it (``ListDesire.unknown``) and reported as a problem, never uploaded. Under
``signature: cosign`` nothing without a valid signature by a configured key is synced.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from imagesync.config.registries import RegistrySettings
from imagesync.errors import ImagesyncError, SignatureError
from imagesync.model import DesiredImage, Image, ListDesire, ListState, Signer
from imagesync.sources.base import Context, ImageLocation, Source, SourceOutcome
from imagesync.sources.oci import artifact, signatures
from imagesync.sources.oci.auth import Credentials
from imagesync.sources.oci.cosign import CosignPublicKey, load_public_keys
from imagesync.sources.oci.harbor import HarborClient
from imagesync.sources.oci.memory import Seen, dump, load
from imagesync.sources.oci.scan import Scan, followed
from imagesync.util import redact
from imagesync.util.logfields import fields

log = logging.getLogger(__name__)
# Manifest HEADs in flight per registry: below requests' connection pool (10 per host), kind to the registry.
_HEADS_AT_ONCE = 8


@dataclass(frozen=True)
class RegistryAccepted:
    """A registry as read this run, for reports (:class:`imagesync.sources.base.Accepted`)."""

    identifier: str
    signer: Signer | None
    unsigned: bool
    image_count: int
    created: datetime | None = None
    expires: datetime | None = None


@dataclass
class RegistrySource:
    """One registry subscription for one VO (a registry for several VOs is one source per VO, ``<name>@<vo>``)."""

    settings: RegistrySettings
    client: HarborClient
    keys: tuple[CosignPublicKey, ...]
    context: Context
    vo: str | None = None
    name: str = ""
    kind: str = "oci"
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.name or self.settings.name

    def load(self) -> SourceOutcome:
        """Read and verify the registry. Raises nothing: failures are the outcome."""
        try:
            return self._load()
        except ImagesyncError as exc:
            return self._failed(exc.about(self.name).one_line())
        except Exception as exc:  # a bug must not cost the other sources their run (invariant 6)
            log.debug("source=%s unexpected error", self.name, exc_info=True)
            return self._failed(f"{self.name}: unexpected error: {type(exc).__name__}: {exc} (run with -v)")

    def locate(self, image: DesiredImage) -> ImageLocation:
        """The layer's blob URL; the registry's current Authorization is asked for at each attempt."""
        repository = image.image.identifier.split("/", 1)[1].rsplit(":", 1)[0]
        digest = f"sha256:{image.image.sha256}"
        return ImageLocation(url=f"{self.client.base_url}/v2/{repository}/blobs/{digest}",
                             headers=lambda: self.client.blob(repository, digest).headers)

    def close(self) -> None:
        self.client.close()

    def _load(self) -> SourceOutcome:
        store, record = self.context.store, self.context.record
        previous = store.get_list(self.name) if store is not None else None
        memory = load(previous.raw if previous is not None else None, self._keys_id())
        scan = Scan(self.client, self.settings)
        seen: dict[str, Seen] = {}
        unknown: list[str] = []
        tags = list(followed(scan, self.settings))
        for (repository, tag, _), digest in zip(tags, self._digests(tags), strict=True):
            identifier = f"{self.client.name}/{repository}:{tag}"
            try:
                if isinstance(digest, ImagesyncError):
                    raise digest
                seen[identifier] = self._artifact(repository, tag, digest, memory.get(identifier))
            except (artifact.Refused, SignatureError, ImagesyncError) as exc:
                self._problem(f"{identifier}: {redact.text(exc.one_line())}")
                unknown.append(identifier)
        images = self._desired(seen)
        status: ListState = "unchanged" if memory and seen == memory else "ok"
        if store is not None and record:
            self._record(seen, images, status == "unchanged")
        log.info("registry accepted", extra=fields(list=self.name, result=status, images=len(images),
                                                   signature=self.settings.signature))
        signer = next((s.signer for s in seen.values() if s.signer is not None), None)
        accepted = RegistryAccepted(identifier=self._identifier(), signer=signer,
                                    unsigned=self.settings.signature == "none", image_count=len(images))
        desire = ListDesire(name=self.name, status=status, images=images, unknown=tuple(unknown),
                            notes=tuple(self.problems))
        return SourceOutcome(settings=_View(self.name, self.settings), status=status, error=None, accepted=accepted,
                             desire=desire, kind=self.kind, problems=tuple(self.problems))

    def _digests(self, tags: list[tuple[str, str, str | None]]) -> list[str | ImagesyncError]:
        """Each tag's manifest digest: as listed (Harbor), else by HEAD, several at once: on a no-op rerun these
        requests are nearly all the work, and one after another they wait on the registry's round trips."""
        def head(item: tuple[str, str, str | None]) -> str | ImagesyncError:
            repository, tag, listed = item
            try:
                return listed or self.client.manifest_digest(repository, tag)
            except ImagesyncError as exc:
                return exc

        if sum(1 for item in tags if item[2] is None) < 2:
            return [head(item) for item in tags]
        with ThreadPoolExecutor(max_workers=min(_HEADS_AT_ONCE, len(tags)), thread_name_prefix="oci-head") as pool:
            return list(pool.map(head, tags))

    def _artifact(self, repository: str, tag: str, digest: str, before: Seen | None) -> Seen:
        if before is not None and before.image.version == digest:
            return before  # verified before, under these very keys: the digest says the bytes are the same
        manifest = self.client.manifest(repository, digest)
        image = artifact.image_of(self.client.name, repository, tag, manifest,
                                  required_annotation=self.settings.required_annotation)
        signer = signatures.verify(self.client, repository, digest, self.keys) if self.keys else None
        return Seen(image=image, signer=signer)

    def _desired(self, seen: dict[str, Seen]) -> tuple[DesiredImage, ...]:
        known = self._known_sha512()
        return tuple(DesiredImage(list_name=self.name, list_identifier=self._identifier(),
                                  image=_with_sha512(item.image, known), prefix=self.settings.prefix, vo=self.vo)
                     for item in seen.values())

    def _known_sha512(self) -> dict[tuple[str, str], str]:
        store = self.context.store
        if store is None:
            return {}
        return {(r.identifier, r.version): r.sha512 for r in store.images(self.name) if r.sha512}

    def _record(self, seen: dict[str, Seen], images: tuple[DesiredImage, ...], unchanged: bool) -> None:
        store = self.context.store
        assert store is not None
        signer = next((s.signer for s in seen.values() if s.signer is not None), None)
        with store.step():
            store.record_source_ok(self.name, url=self.settings.url, raw=dump(seen, self._keys_id()),
                                   identifier=self._identifier(), signer_dn=signer.dn if signer else None,
                                   unchanged=unchanged, at=self.context.now)
            for item in images:
                store.upsert_image(self.name, item.image, at=self.context.now)

    def _failed(self, message: str) -> SourceOutcome:
        log.error("registry failed", extra=fields(list=self.name, result="failed", error=message))
        store = self.context.store
        if store is not None and self.context.record:
            try:
                store.record_list_failed(self.name, url=self.settings.url, error=message, at=self.context.now)
            except ImagesyncError as write:
                log.error("source=%s cannot record the failure in the state: %s", self.name, write.one_line())
        return SourceOutcome(settings=_View(self.name, self.settings), status="failed", error=message,
                             accepted=None, desire=ListDesire(name=self.name, status="failed"), kind=self.kind)

    def _problem(self, message: str) -> None:
        log.error("artifact refused", extra=fields(list=self.name, result="refused", error=message))
        self.problems.append(message)

    def _identifier(self) -> str:
        return f"{self.client.name}/{self.settings.harbor_project or ','.join(self.settings.repositories)}"

    def _keys_id(self) -> str:
        # What an artifact was accepted under: other keys or another required annotation must look at it again.
        keys = ",".join(sorted(k.fingerprint for k in self.keys)) or "none"
        return f"{keys}|{self.settings.required_annotation or ''}"


@dataclass(frozen=True)
class _View:
    """The settings every source shows (:class:`imagesync.sources.base.SourceSettings`) under this source's name."""

    name: str
    settings: RegistrySettings

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def signature(self) -> str:
        return self.settings.signature

    @property
    def enabled(self) -> bool:
        return self.settings.enabled


def _with_sha512(image: Image, known: dict[tuple[str, str], str]) -> Image:
    # The sha512 of bytes seen in an earlier run: plans compare it with what the targets hold (drift).
    sha512 = known.get((image.identifier, image.version), "")
    return replace(image, sha512=sha512) if sha512 else image


def registries(context: Context, names: tuple[str, ...]) -> list[Source]:
    """The selected registries (every enabled one when ``names`` is empty), one source per VO. Raises
    ConfigError for a cosign key that cannot be used."""
    found: list[Source] = []
    for item in context.settings.registries:
        wanted = [vo for vo in (item.vos or (None,)) if _chosen(item, vo, names)]
        if not wanted:
            continue
        keys = load_public_keys(item.cosign_keys) if item.signature == "cosign" else ()
        for vo in wanted:
            client = _client(context, item)
            name = item.name if len(item.vos) <= 1 else f"{item.name}@{vo}"
            found.append(RegistrySource(item, client, keys, context, vo=vo, name=name))
    return found


def _chosen(item: RegistrySettings, vo: str | None, names: tuple[str, ...]) -> bool:
    if not names:
        return item.enabled
    return item.name in names or f"{item.name}@{vo}" in names


def _client(context: Context, item: RegistrySettings) -> HarborClient:
    settings = context.settings
    credentials = Credentials(item.username, item.password) if item.username and item.password else None
    ca_dir = settings.trust.ca_dir if settings.trust.ca_dir.is_dir() else None
    return HarborClient(item.url, credentials=credentials, ca_dir=ca_dir,
                          allowed_networks=settings.download.allowed_networks,
                          timeout=settings.download.timeout, token=item.token)

