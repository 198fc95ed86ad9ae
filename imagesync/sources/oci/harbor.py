"""Harbor's REST listing of a project's repositories, beside the distribution API every registry speaks.

Only :meth:`HarborClient.harbor_repositories` is Harbor's own; the rest of a Harbor registry is reached as any
registry is (:class:`~imagesync.sources.oci.client.RegistryClient`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import quote

from imagesync.sources.oci import content
from imagesync.sources.oci.client import RegistryClient
from imagesync.sources.oci.content import ContentError

_PAGE_CAP = 4 * 1024 * 1024
_MAX_PAGES = 1000
T = TypeVar("T")


class HarborClient(RegistryClient):
    """A registry that is a Harbor: its project listing besides the distribution API."""

    def harbor_repositories(self, project: str) -> list[str]:
        """Every repository of Harbor ``project`` (``project/repo`` names). Raises RegistryError (NotFoundError for
        an unknown project)."""
        what = f"repositories of Harbor project {self._checked(content.check_repository, project, project)}"
        url = f"{self.base_url}/api/v2.0/projects/{project}/repositories?page=1&page_size=100"
        return [name for page in self._pages(url, what) for name in self._parsed(content.parse_repositories, page,
                                                                                   project, what)]

    def harbor_tags(self, project: str, repository: str) -> dict[str, str]:
        """Every tag of ``repository`` in Harbor ``project`` with the digest it points at, from Harbor's artifacts
        listing: one request per 100 artifacts where the distribution API needs one per tag (a no-op rerun is
        little else). Raises RegistryError."""
        what = f"artifacts of {self._checked(content.check_repository, repository, repository)}"
        # Harbor wants the repository's name inside its project, its slashes encoded twice (its API description).
        name = quote(quote(repository.removeprefix(f"{project}/"), safe=""), safe="")
        url = (f"{self.base_url}/api/v2.0/projects/{project}/repositories/{name}/artifacts"
               "?with_tag=true&with_label=false&with_scan_overview=false&page=1&page_size=100")
        tags: dict[str, str] = {}
        for page in self._pages(url, what):
            tags.update(self._parsed(content.parse_artifact_tags, page, project, what))
        return tags

    def _pages(self, url: str, what: str) -> Iterator[bytes]:
        """The bodies of a Harbor listing, following ``Link: rel="next"``; the credentials go with every page
        (Harbor's API asks for Basic, and answers bad ones as anonymous). Raises RegistryError."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen or len(seen) >= _MAX_PAGES:
                raise self._error(f"cannot list {what}: pagination does not end", "report it to the registry")
            seen.add(next_url)
            response = self._send("GET", next_url, headers={**self._auth.basic(), "Accept": "application/json"},
                                  stream=True, params=None, redirects=True, what=what)
            with response:
                self._check_status(response, what, True)
                body = self._read(response, _PAGE_CAP, what)
                next_url = self._next_page(response, what)
            yield body

    def _parsed(self, parse: Callable[[bytes, str], T], raw: bytes, project: str, what: str) -> T:
        try:
            return parse(raw, project)
        except ContentError as exc:
            raise self._error(f"cannot read {what}: {exc}", "is this a Harbor registry?") from exc
