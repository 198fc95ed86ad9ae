"""The node_exporter textfile of a run (DESIGN §9): written with prometheus_client, atomically, by the CLI at the
end of every run that is not a dry run, while the run still holds its lock.

What a scrape of the file means:

- gauges describe the last run (timestamps, duration, exit code, each list, the images each target holds);
- ``imagesync_last_success_timestamp_seconds`` is the end of the last run that exited 0, carried over from the
  previous file and from the state's runs table (the later of the two), so a failed run never resets it; 0 when
  no run ever succeeded, so "no success in 12 h" fires for a host that never got one;
- the ``*_total`` counters accumulate over runs (the previous file is read back); a lost file restarts them from
  zero, which Prometheus treats as a counter reset;
- a dry run (``plan``, ``sync --dry-run``) leaves the file alone: its numbers would describe changes that did not
  happen.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from imagesync.config.settings import Settings
from imagesync.errors import ImagesyncError
from imagesync.run.pipeline import SyncResult
from imagesync.sources.base import SourceOutcome
from imagesync.state.lifecycle import TargetState
from imagesync.state.store import ListRecord, StateStore
from imagesync.util import atomic
from imagesync.util.logfields import fields

log = logging.getLogger(__name__)
ACTION_KINDS = ("add", "update", "update-metadata", "retire", "keep")
# Seeded with zeros, so increase(...[12h]) sees a series before its first failure.
_SEEDED_RESULTS = ("done", "failed")
_LAST_SUCCESS = "imagesync_last_success_timestamp_seconds"
_ACTIONS = "imagesync_actions_total"
_DOWNLOADED = "imagesync_bytes_downloaded_total"
_UPLOADED = "imagesync_bytes_uploaded_total"


@dataclass(frozen=True)
class Carried:
    """What a run takes over from the previous file: the last success and the counters."""

    last_success: float = 0.0
    actions: dict[tuple[str, str], float] = field(default_factory=dict)
    downloaded: float = 0.0
    uploaded: float = 0.0


class Recorder:
    """The ``finish`` step of :func:`imagesync.run.pipeline.sync` that writes ``settings.metrics_file``.

    A file that cannot be written (or a state that cannot be read) is logged at ERROR and kept in ``error``, so
    the CLI can fail the run: an operator whose alerts read this file must learn that it is stale."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self.error: str | None = None

    @classmethod
    def for_run(cls, settings: Settings, *, dry_run: bool) -> Recorder | None:
        """The recorder for a run, or None when no metrics are written (no ``metrics_file``, or a dry run)."""
        if settings.metrics_file is None or dry_run:
            return None
        return cls(settings, settings.metrics_file)

    def __call__(self, result: SyncResult, store: StateStore) -> None:
        if result.dry_run:
            return
        try:
            write(self.path, build(self.settings, result, store, carried(self.path)))
        except (OSError, ImagesyncError) as exc:
            self.error = exc.one_line() if isinstance(exc, ImagesyncError) else f"{type(exc).__name__}: {exc}"
            log.error("metrics not written", extra=fields(file=str(self.path), error=self.error))


def write(path: Path, registry: CollectorRegistry) -> None:
    """Replace ``path`` atomically with the text exposition of ``registry``. Raises OSError."""
    atomic.write_bytes(path, generate_latest(registry))


def carried(path: Path) -> Carried:
    """The last success and the counters of the previous file; nothing (a warning) if it is missing or unreadable.
    Raises nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Carried()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("metrics_file %s unreadable (%s): counters restart from zero", path, exc)
        return Carried()
    try:
        found = [s for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError as exc:
        log.warning("metrics_file %s is not in the text format (%s): counters restart from zero", path, exc)
        return Carried()
    # A hand-edited NaN, infinity or negative value would poison every later sum: such a sample counts as 0.
    found = [s._replace(value=s.value if math.isfinite(s.value) and s.value >= 0 else 0.0) for s in found]
    single = {s.name: s.value for s in found if not s.labels}
    actions = {(s.labels.get("kind", ""), s.labels.get("result", "")): s.value for s in found if s.name == _ACTIONS}
    return Carried(last_success=single.get(_LAST_SUCCESS, 0.0), actions=actions,
                   downloaded=single.get(_DOWNLOADED, 0.0), uploaded=single.get(_UPLOADED, 0.0))


def build(settings: Settings, result: SyncResult, store: StateStore, before: Carried) -> CollectorRegistry:
    """The metrics of the finished run ``result``, the state after it and what ``before`` carries over.
    Raises StateError when the state cannot be read."""
    families = [*_run(result, store, before), *_lists(result.lists, store), _targets(result),
                *_images(settings, store),
                *_counters(result, before)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return registry


class _Fixed(Collector):
    """Families computed once; a registry needs a collector to expose them."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _run(result: SyncResult, store: StateStore, before: Carried) -> Iterator[Metric]:
    finished = result.finished_at or result.started_at
    if result.exit_code == 0:
        success = finished.timestamp()
    else:
        remembered = store.last_success()
        success = max(before.last_success, remembered.timestamp() if remembered else 0.0)
    yield _gauge("imagesync_last_run_timestamp_seconds", "When the last run (not a dry run) ended.",
                 finished.timestamp())
    yield _gauge(_LAST_SUCCESS, "When the last run that exited 0 ended; 0 if none did.", success)
    yield _gauge("imagesync_run_duration_seconds", "How long the last run took.",
                 (finished - result.started_at).total_seconds())
    yield _gauge("imagesync_exit_code", "Exit code of the last run (0 ok, 1 partial, 3 nothing done).",
                 result.exit_code)


def _lists(outcomes: list[SourceOutcome], store: StateStore) -> Iterator[Metric]:
    ok = GaugeMetricFamily("imagesync_list_ok", "1 if the list was fetched and verified in the last run.",
                           labels=["list"])
    expiry = GaugeMetricFamily("imagesync_list_expiry_timestamp_seconds",
                               "dc:date:expires of the last accepted copy of the list.", labels=["list"])
    images = GaugeMetricFamily("imagesync_list_images", "Images in the list as accepted in the last run.",
                               labels=["list"])
    info = InfoMetricFamily("imagesync_list", "Who signed the last accepted copy of the list.", labels=["list"])
    for outcome in outcomes:
        name = outcome.settings.name
        ok.add_metric([name], 0 if outcome.status == "failed" else 1)
        record = store.get_list(name)
        accepted = outcome.accepted
        expires = (accepted.expires if accepted else None) or outcome.desire.expires or (
            record.expires if record else None)
        if expires is not None:
            expiry.add_metric([name], expires.timestamp())
        if accepted is not None:
            images.add_metric([name], accepted.image_count)
        dn, ca = _signer(outcome, record)
        info.add_metric([name], {"signature": outcome.settings.signature, "signer": dn, "signer_ca": ca})
    yield from (ok, expiry, images, info)


def _targets(result: SyncResult) -> Metric:
    # The per-site view a federation alerts on (issue 11): which sites the last run could not fully serve.
    failed = Counter(r.action.target for r in result.results if r.status == "failed")
    ok = GaugeMetricFamily("imagesync_target_ok", "1 if the target was reached and none of its actions failed in "
                           "the last run.", labels=["target"])
    for target in result.targets:
        ok.add_metric([target.name], 1 if target.status == "ok" and not failed[target.name] else 0)
    return ok


def _signer(outcome: SourceOutcome, record: ListRecord | None) -> tuple[str, str]:
    # A list that failed after its signature verified names who signed it; else the last accepted copy's signer.
    signer = outcome.accepted.signer if outcome.accepted else outcome.signer
    if signer is not None:
        return signer.dn, signer.ca
    if outcome.accepted is None and record is not None:
        return record.signer_dn or "", record.signer_ca or ""
    return "", ""  # signature: none


def _images(settings: Settings, store: StateStore) -> Iterator[Metric]:
    counts = Counter((r.target, r.state.value) for r in store.target_images())
    targets = sorted({t.name for t in settings.targets} | {target for target, _ in counts})
    family = GaugeMetricFamily("imagesync_images", "Images per target by lifecycle state, from the state.",
                               labels=["target", "state"])
    for target in targets:
        for state in TargetState:
            family.add_metric([target, state.value], counts[(target, state.value)])
    yield family


def _counters(result: SyncResult, before: Carried) -> Iterator[Metric]:
    actions = {(kind, seeded): 0.0 for kind in ACTION_KINDS for seeded in _SEEDED_RESULTS} | before.actions
    for item in result.results:
        key = (item.action.kind, item.status)
        actions[key] = actions.get(key, 0.0) + 1
    family = CounterMetricFamily("imagesync_actions", "Actions carried out, by kind and result, over all runs.",
                                 labels=["kind", "result"])
    for (kind, outcome), count in sorted(actions.items()):
        family.add_metric([kind, outcome], count)
    yield family
    uploaded = sum(r.bytes_uploaded for r in result.results)
    yield CounterMetricFamily("imagesync_bytes_downloaded", "Image bytes downloaded, over all runs.",
                              value=before.downloaded + result.bytes_downloaded)
    yield CounterMetricFamily("imagesync_bytes_uploaded", "Image bytes uploaded to targets, over all runs.",
                              value=before.uploaded + uploaded)
