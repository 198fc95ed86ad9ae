"""Harbor's REST listing of a project's repositories, beside the distribution API every registry speaks.

Only :meth:`HarborClient.harbor_repositories` is Harbor's own; the rest of a Harbor registry is reached as any
registry is (:class:`~imagesync.sources.oci.client.RegistryClient`).
"""

from __future__ import annotations

from imagesync.sources.oci import content
from imagesync.sources.oci.client import RegistryClient
from imagesync.sources.oci.content import ContentError

_PAGE_CAP = 4 * 1024 * 1024
_MAX_PAGES = 1000


class HarborClient(RegistryClient):
    """A registry that is a Harbor: its project listing besides the distribution API."""

    def harbor_repositories(self, project: str) -> list[str]:
        """Every repository of Harbor ``project`` (``project/repo`` names), through Harbor's REST API in pages of
        100 following ``Link: rel="next"``; the credentials go with every page (Harbor's API asks for Basic, and
        answers bad ones as anonymous). Raises RegistryError (NotFoundError for an unknown project)."""
        what = f"repositories of Harbor project {self._checked(content.check_repository, project, project)}"
        url: str | None = f"{self.base_url}/api/v2.0/projects/{project}/repositories?page=1&page_size=100"
        names: list[str] = []
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= _MAX_PAGES:
                raise self._error(f"cannot list {what}: pagination does not end", "report it to the registry")
            seen.add(url)
            response = self._send("GET", url, headers={**self._auth.basic(), "Accept": "application/json"},
                                  stream=True, params=None, redirects=True, what=what)
            with response:
                self._check_status(response, what, True)
                names += self._repository_names(self._read(response, _PAGE_CAP, what), project, what)
                url = self._next_page(response, what)
        return names

    def _repository_names(self, raw: bytes, project: str, what: str) -> list[str]:
        try:
            return content.parse_repositories(raw, project)
        except ContentError as exc:
            raise self._error(f"cannot read {what}: {exc}", "is this a Harbor registry?") from exc
