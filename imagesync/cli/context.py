"""What every command shares: the loaded configuration (:class:`Context`), the ``--format`` option and JSON
output with secrets masked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagesync.cli import logs
from imagesync.net import patience
from imagesync.util import redact
from imagesync.util.textsafe import json_text

if TYPE_CHECKING:
    from imagesync.config.settings import Settings

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


@dataclass
class Context:
    config_arg: str | None
    verbose: bool
    # -q: sync, plan and gc print no report; failures reach stderr as ERROR records, once each.
    quiet: bool = False
    log_format: str = "text"

    def settings(self, *, required: bool = True, interactive: bool = False) -> Settings:
        """The loaded configuration; without a config file (and none asked for) defaults when not required.
        ``interactive`` commands get the terminal's patience (:mod:`imagesync.net.patience`). Raises ConfigError."""
        from imagesync.config import settings as config

        path = config.config_path(self.config_arg)
        if not required and self.config_arg is None and not path.exists():
            settings = config.from_mapping({}, source=Path("imagesync.yaml"))
        else:
            settings = config.load(path)
        if settings.log.syslog:
            logs.add_syslog(settings.log.syslog_socket, settings.log.syslog_facility, self.log_format)
        return patience.for_terminal(settings) if interactive else settings


def print_json(data: dict[str, Any]) -> None:
    """``data`` as indented JSON on stdout, secrets masked, escaped for the terminal. Raises nothing."""
    click.echo(json_text_of(data))


def json_text_of(data: dict[str, Any]) -> str:
    return json_text(redact.text(json.dumps(data, indent=2, ensure_ascii=False)))
