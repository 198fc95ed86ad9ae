"""Command line (DESIGN §2). The only module that prints and chooses exit codes.

Each command imports what it needs when it runs: ``imagesync --version`` loads click and nothing heavy, ``lists``
no state, driver or metrics code, and only a run that writes metrics imports prometheus_client
(tests/integration/test_cli_imports.py holds each command to that).
"""

from __future__ import annotations

import io
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from imagesync.cli import logs
from imagesync.cli.context import FORMAT, Context, print_json
from imagesync.cli.listen import listen_cmd
from imagesync.cli.verify import verify
from imagesync.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError, ImagesyncError
from imagesync.net import patience
from imagesync.util import redact
from imagesync.util.textsafe import one_line

log = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imagesync", prog_name="imagesync", message="%(prog)s %(version)s")
@click.option("--config", "config_arg", metavar="PATH", help="Config file (default: $IMAGESYNC_CONFIG or "
              "/etc/imagesync/imagesync.yaml).")
@click.option("-v", "--verbose", count=True, help="More detail, tracebacks on errors.")
@click.option("-q", "--quiet", count=True, help="Nothing on stdout or stderr when all went well; otherwise one "
              "ERROR line per failure (for cron).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def cli(ctx: click.Context, config_arg: str | None, verbose: int, quiet: int, log_format: str) -> None:
    """Keep an OpenStack image catalogue in step with signed HEPiX image lists and OCI registries."""
    quiet_run = bool(quiet) and not verbose
    logs.configure(logging.DEBUG if verbose else logging.INFO, log_format, quiet=quiet_run)
    ctx.obj = Context(config_arg=config_arg, verbose=bool(verbose), quiet=quiet_run, log_format=log_format)


cli.add_command(verify)
cli.add_command(listen_cmd)


@cli.command("lists", epilog=patience.RULE)
@FORMAT
@click.pass_obj
def lists_cmd(obj: Context, fmt: str) -> None:
    """Fetch, verify and parse every subscribed list and show its status."""
    from imagesync.cli import report
    from imagesync.sources.collect import collect

    settings = obj.settings(interactive=True)
    outcomes = collect(settings, now=datetime.now(UTC))
    if fmt == "json":
        print_json({"lists": [report.list_entry(o) for o in outcomes]})
    else:
        click.echo(report.lists_text(outcomes))
    sys.exit(EXIT_PARTIAL if any(o.status == "failed" for o in outcomes) else EXIT_OK)


def _sync_options(func: Any) -> Any:
    for option in reversed([
        click.option("--list", "list_names", multiple=True, metavar="NAME", help="Only this list (repeatable)."),
        click.option("--target", "target_names", multiple=True, metavar="NAME", help="Only this target (repeatable)."),
        FORMAT,
        click.option("--report-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the JSON report here (atomically)."),
    ]):
        func = option(func)
    return func


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@_sync_options
@click.pass_obj
def sync(obj: Context, dry_run: bool, list_names: tuple[str, ...], target_names: tuple[str, ...], fmt: str,
         report_file: Path | None) -> None:
    """Bring every target in step with the subscribed lists."""
    _run_sync(obj, dry_run, list_names, target_names, fmt, report_file)


@cli.command("plan", epilog=patience.RULE)
@_sync_options
@click.pass_obj
def plan_cmd(obj: Context, list_names: tuple[str, ...], target_names: tuple[str, ...], fmt: str,
             report_file: Path | None) -> None:
    """Show what sync would do (same as sync --dry-run)."""
    _run_sync(obj, True, list_names, target_names, fmt, report_file)


def _run_sync(obj: Context, dry_run: bool, list_names: tuple[str, ...], target_names: tuple[str, ...], fmt: str,
              report_file: Path | None) -> None:
    from imagesync.cli import progress, report, runs
    from imagesync.config.registries import source_names

    settings = obj.settings(interactive=dry_run)
    _check_names("--list", list_names, source_names((item.name for item in settings.lists), settings.registries))
    _check_names("--target", target_names, [t.name for t in settings.targets])
    if not settings.targets:
        raise ConfigError("targets: none configured (add at least one, e.g. driver: directory)",
                          subject=str(settings.source))
    # Bars only on a terminal, never with -q.
    with progress.on_terminal(enabled=not obj.quiet) as bars:
        result, data = runs.run(settings, dry_run=dry_run, lists=list_names, targets=target_names,
                                report_file=report_file, progress=bars)
    if fmt == "json":
        print_json(data)  # asked for by name: printed with -q too (--report-file is the quiet way)
    elif not obj.quiet:
        click.echo(report.sync_text(result))
    sys.exit(result.exit_code)


def _check_names(option: str, given: tuple[str, ...], known: list[str]) -> None:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise click.UsageError(f"{option} {unknown[0]}: not configured (known: {', '.join(known) or 'none'})")


@cli.command()
@click.option("--list", "list_name", metavar="NAME", help="Only images of this list.")
@FORMAT
@click.pass_obj
def images(obj: Context, list_name: str | None, fmt: str) -> None:
    """Known images, their versions and, per target, their ids and states (from the state, no network)."""
    from imagesync.cli import report
    from imagesync.run import pipeline

    settings = obj.settings()
    with pipeline.open_state(settings, dry_run=True) as store:
        data = report.images_json(store, list_name)
    if fmt == "json":
        print_json(data)
    else:
        click.echo(report.images_text(data))


@cli.command("check", epilog=patience.RULE)
@FORMAT
@click.pass_obj
def check_cmd(obj: Context, fmt: str) -> None:
    """Doctor: config, CA directory, each list, each target and its projects, disk space, qemu-img."""
    from imagesync.cli.doctor import run_checks

    findings = run_checks(obj.settings(interactive=True), now=datetime.now(UTC))
    ok = all(f.ok for f in findings)
    if fmt == "json":
        print_json({"ok": ok, "checks": [f.__dict__ for f in findings]})
    else:
        click.echo(redact.text("\n".join(one_line(f"{'OK  ' if f.ok else 'FAIL'}  {f.area:<7} {f.name}: {f.detail}")
                                          for f in findings)))
    sys.exit(EXIT_OK if ok else EXIT_PARTIAL)


@cli.command("gc")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.pass_obj
def gc_cmd(obj: Context, dry_run: bool) -> None:
    """Prune downloaded images, conversions and partial files the state no longer needs."""
    from imagesync.run import gc

    settings = obj.settings()
    removed = gc.collect(settings, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    if obj.quiet:
        return
    for path, size in removed:
        click.echo(f"{verb} {path} ({size / 1024**2:.1f} MiB)")
    click.echo(f"{verb} {len(removed)} file(s), {sum(s for _, s in removed) / 1024**2:.1f} MiB")


@cli.command()
@click.option("--from", "source", type=click.Choice(["cloudkeeper-os", "atrope"]), required=True,
              help="The tool whose images to take over.")
@click.option("--dry-run", is_flag=True, help="Only show what would be adopted.")
@click.option("--target", "target_names", multiple=True, metavar="NAME", help="Only this Glance target.")
@click.option("--atrope-tag", "atrope_tags", multiple=True, metavar="TAG",
              help="The Glance tag atrope wrote ([glance] tag of atrope.conf); default: atrope and atrope-catchall.")
@click.pass_obj
def adopt(obj: Context, source: str, dry_run: bool, target_names: tuple[str, ...],
          atrope_tags: tuple[str, ...]) -> None:
    """Take over images another tool uploaded when they are provably what a list or registry offers."""
    from imagesync.run import pipeline
    from imagesync.run.adopt import adopt as run_adopt
    from imagesync.targets.glance.foreign import ATROPE_TAGS

    settings = obj.settings()
    _check_names("--target", target_names, [t.name for t in settings.targets])
    if atrope_tags and source != "atrope":
        raise click.UsageError("--atrope-tag: only with --from atrope")
    results = run_adopt(settings, source=source, dry_run=dry_run,  # type: ignore[arg-type]
                        targets=target_names, clock=pipeline.utcnow, tags=atrope_tags or ATROPE_TAGS)
    for item in results:
        line = f"{item.status:<8} {item.target}: {item.image_id} {item.identifier or '-'} ({item.reason})"
        click.echo(one_line(line))
    click.echo(f"{sum(r.status in ('adopted', 'planned') for r in results)} of {len(results)} image(s) "
               f"{'would be ' if dry_run else ''}adopted")
    sys.exit(EXIT_PARTIAL if any(r.status == "failed" for r in results) else EXIT_OK)


@cli.command()
@click.option("--glance", is_flag=True, help="Sync into Glance (OS_* environment, else the local dev cloud).")
@click.option("--oci", is_flag=True, help="From a local OCI registry (Debian's docker-registry) instead of a list.")
@click.pass_obj
def demo(obj: Context, glance: bool, oci: bool) -> None:
    """Sign and serve a demo image list (or OCI artifacts) on 127.0.0.1 and sync three times."""
    from imagesync.demo.run import run_demo

    sys.exit(run_demo(echo=click.echo, glance=glance, oci=oci))


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: expected errors print one line, others a pointer to -v; exit codes per DESIGN §2."""
    _tolerant_output()
    try:
        cli.main(args=argv, prog_name="imagesync", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_PARTIAL)
    except ImagesyncError as exc:
        _fail(exc.one_line(), exc.exit_code, exc)
    except Exception as exc:
        _fail(f"unexpected error: {type(exc).__name__}: {exc} (run with -v for the traceback)", EXIT_PARTIAL, exc)
    sys.exit(EXIT_OK)


def _fail(message: str, code: int, exc: BaseException) -> NoReturn:
    log.debug("traceback", exc_info=exc)
    click.echo(f"imagesync: error: {one_line(redact.text(message))}", err=True)
    sys.exit(code)


def _tolerant_output() -> None:
    """Make stdout and stderr write what they cannot encode as escapes instead of raising.

    Every field from a list is escaped before printing; this is the backstop, so that a report of a run can never
    be lost to a UnicodeEncodeError (e.g. a lone surrogate, or a non-UTF-8 locale). Raises nothing.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


__all__ = ["ConfigError", "cli", "main"]
