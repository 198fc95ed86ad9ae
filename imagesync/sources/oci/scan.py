"""Which tags of a registry a subscription follows: the repositories (a Harbor project's, or the named ones),
their tags, ``tag_pattern`` and the ``images:`` subset. cosign's own tags (``sha256-<hex>.sig``, ``.att``,
``.sbom`` and the referrers tag schema ``sha256-<hex>``) are signatures and attachments, never images."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from imagesync.config.registries import RegistrySettings
from imagesync.sources.oci.harbor import HarborClient

_ATTACHMENT = re.compile(r"^sha(256|512)-[0-9a-f]+(\.(sig|att|sbom))?$")


@dataclass
class Scan:
    """The registry of one subscription."""

    client: HarborClient
    settings: RegistrySettings

    def repositories(self) -> list[str]:
        """The repositories to look at. Raises RegistryError: a registry that cannot be listed fails whole."""
        if self.settings.harbor_project:
            return self.client.harbor_repositories(self.settings.harbor_project)
        return list(self.settings.repositories)

    def tags(self, repository: str) -> dict[str, str | None]:
        """The tags of ``repository``, with their digests when Harbor's listing gives them. Raises RegistryError."""
        if self.settings.harbor_project:
            return dict(self.client.harbor_tags(self.settings.harbor_project, repository))
        return dict.fromkeys(self.client.tags(repository))


def followed(scan: Scan, settings: RegistrySettings) -> Iterator[tuple[str, str, str | None]]:
    """(repository, tag, digest) of every followed tag, in name order; the digest where the listing gives it
    (Harbor's), else None. Raises RegistryError when a repository cannot be listed: its tags are unknown, so
    nothing of the registry may retire (invariant 1)."""
    pattern = re.compile(settings.tag_pattern) if settings.tag_pattern else None
    subset = set(settings.images)
    for repository in sorted(scan.repositories()):
        for tag, digest in sorted(scan.tags(repository).items()):
            if _ATTACHMENT.match(tag) or (pattern is not None and not pattern.search(tag)):
                continue
            if subset and f"{repository}:{tag}" not in subset:
                continue
            yield repository, tag, digest
