"""``imagesync verify``: one list, from a file, a URL or the configuration, with its signature checked as the
configuration (or the options) ask."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from imagesync.cli.context import FORMAT, Context, print_json
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.net import patience
from imagesync.util import redact

if TYPE_CHECKING:
    from imagesync.config.settings import ListSettings, Settings


@click.command(epilog=patience.RULE)
@click.argument("source")
@click.option("--endorser-dn", metavar="DN", help="Expected signer subject (with --endorser-ca).")
@click.option("--endorser-ca", metavar="DN", help="Expected signer issuer (with --endorser-dn).")
@click.option("--ca-dir", type=click.Path(file_okay=False, path_type=Path), help="Grid CA directory.")
@click.option("--crl", type=click.Choice(["off", "if_present", "require"]), help="CRL checking mode.")
@click.option("--gpg-fingerprint", "fingerprints", multiple=True, metavar="FPR",
              help="Verify as a GPG-signed list pinned to this key (repeatable).")
@FORMAT
@click.pass_obj
def verify(obj: Context, source: str, endorser_dn: str | None, endorser_ca: str | None, ca_dir: Path | None,
           crl: str | None, fingerprints: tuple[str, ...], fmt: str) -> None:
    """Verify one list: SOURCE is a file, a URL or the name of a configured list.

    Exit 0 (JSON verified: true) when it passed what its configuration asks for; signature: none lists
    pass as ACCEPTED UNSIGNED (JSON unsigned: true)."""
    from imagesync.cli import report
    from imagesync.sources.hepix.stage import ListStage, make_fetcher, make_verifier

    settings = obj.settings(required=False, interactive=True)
    item = _verify_item(settings, source, endorser_dn, endorser_ca, fingerprints)
    # --ca-dir is the trust of this one command: the HTTPS fetch of SOURCE as much as its signature.
    trust = replace(settings.trust, ca_dir=ca_dir or settings.trust.ca_dir,
                    crl=crl or settings.trust.crl)  # type: ignore[arg-type]
    settings = replace(settings, trust=trust)
    fetcher = make_fetcher(settings)
    try:
        outcome = ListStage(fetcher=fetcher, verifier=make_verifier(settings), now=datetime.now(UTC)).load(item)
    finally:
        fetcher.close()
    if fmt == "json":
        print_json(report.verify_json(outcome, item))
    else:
        click.echo(report.verify_text(outcome, item))
    sys.exit(EXIT_OK if outcome.accepted is not None else EXIT_PARTIAL)


def _verify_item(settings: Settings, source: str, endorser_dn: str | None, endorser_ca: str | None,
                 fingerprints: tuple[str, ...]) -> ListSettings:
    from imagesync.config import settings as config
    from imagesync.config.settings import Endorser, ListSettings

    if (endorser_dn is None) != (endorser_ca is None):
        raise click.UsageError("--endorser-dn and --endorser-ca go together")
    configured = settings.list_named(source)
    extra = Endorser(dn=endorser_dn, ca=endorser_ca) if endorser_dn and endorser_ca else None
    if configured is not None:
        # Options add to the configured expectation; they never relax it.
        if extra is not None and configured.endorser is not None and configured.endorser != extra:
            raise click.UsageError(f"list {source} is configured with another endorser")
        return replace(configured, endorser=configured.endorser or extra)
    # A bare word is meant as a list name (a path or URL has a '/'): a typo gets the names, not "file not found".
    if "/" not in source and not Path(source).exists():
        known = ", ".join(item.name for item in settings.lists) or "none"
        raise click.UsageError(f"{source}: not a configured list, an existing file or a URL "
                               f"(configured lists: {known})")
    url, token = config.split_token(source)
    signature: config.SignatureMode = "gpg" if fingerprints else "smime"
    return ListSettings(name=redact.url(url), url=url, token=token, signature=signature, endorser=extra,
                        gpg_fingerprints=tuple(f.replace(" ", "").upper() for f in fingerprints))
