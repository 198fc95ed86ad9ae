"""The schedules bin/install puts in place (tests/support/install.py): the systemd units checked by systemd-analyze,
the cron line run as cron runs it (sh -c, its PATH) against a succeeding and a failing config, and logrotate."""

from __future__ import annotations

import grp
import itertools
import json
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from imagesync.demo.world import DemoWorld, build, demo_images
from tests.support.install import Installation

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("logrotate") is None,
                                reason="systemd-analyze or logrotate missing (bin/test installs them)")


def _units_inside(installation: Installation, where: Path) -> list[Path]:
    """Copies of the units the wheel installed, with their /opt/imagesync paths pointing into the root: `verify`
    checks that the ExecStart binaries exist, and the real /opt/imagesync is not there. (The shipped units: the
    installed ones name the test's user, nobody, which systemd rightly calls unsafe.)"""
    where.mkdir()
    units = []
    for name in ("imagesync.service", "imagesync.timer", "imagesync-listen.service"):
        text = installation.path(f"/opt/imagesync/share/imagesync/etc/systemd/{name}").read_text()
        units.append(where / name)
        units[-1].write_text(text.replace("/opt/imagesync/", f"{installation.path('/opt/imagesync')}/"))
    return units


def test_installed_units_are_the_shipped_ones_for_the_user(installation: Installation) -> None:
    for name in ("imagesync.service", "imagesync.timer", "imagesync-listen.service"):
        shipped = installation.path(f"/opt/imagesync/share/imagesync/etc/systemd/{name}").read_text()
        if os.geteuid() == 0:  # the first install had --user nobody
            shipped = shipped.replace("\nUser=imagesync\n", "\nUser=nobody\n")
            shipped = shipped.replace("\nGroup=imagesync\n", f"\nGroup={_group_of('nobody')}\n")
        assert installation.path(f"/usr/local/lib/systemd/system/{name}").read_text() == shipped
    assert os.readlink(installation.path("/etc/systemd/system/timers.target.wants/imagesync.timer")) == \
        "/usr/local/lib/systemd/system/imagesync.timer"


def _group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def test_systemd_units_verify_clean_and_hardened(installation: Installation, tmp_path: Path) -> None:
    service, timer, listen = _units_inside(installation, tmp_path / "units")
    verify = subprocess.run(["systemd-analyze", "verify", str(service), str(timer), str(listen)],
                            capture_output=True, text=True, check=False)
    # verify exits 0 on unknown keys and bad values too, and only says so on stderr.
    assert (verify.returncode, verify.stderr) == (0, ""), verify.stderr
    for unit in (service, listen):
        exposure = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
                                  capture_output=True, text=True, check=False)
        assert exposure.returncode == 0, exposure.stdout[-300:]
    assert "\nExecStart=" in listen.read_text() and " listen " in listen.read_text()
    assert "\nRestart=on-failure\n" in listen.read_text()
    text = service.read_text()
    for line in ("Type=oneshot", "User=imagesync", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/imagesync /var/cache/imagesync /var/log/imagesync", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "ProtectHome=yes"):
        assert f"\n{line}\n" in text, line
    assert "\nRandomizedDelaySec=15min\n" in timer.read_text() and "\nPersistent=true\n" in timer.read_text()


def test_timer_fires_every_4_hours(installation: Installation) -> None:
    timer = installation.path("/usr/local/lib/systemd/system/imagesync.timer").read_text()
    (calendar,) = re.findall(r"^OnCalendar=(.*)$", timer, re.MULTILINE)
    shown = subprocess.run(["systemd-analyze", "calendar", "--iterations=3", calendar], capture_output=True,
                           text=True, check=True, env={**os.environ, "TZ": "UTC"}).stdout
    times = [datetime.strptime(" ".join(m.split()[1:3]), "%Y-%m-%d %H:%M:%S")
             for m in re.findall(r"(?:Next elapse|Iter\. #\d): (.*)", shown)]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [4 * 3600, 4 * 3600]


def _cron_job(installation: Installation) -> tuple[str, str, str]:
    """The PATH, user and command of the installed cron entry."""
    text = installation.path("/etc/cron.d/imagesync").read_text()
    (path,) = re.findall(r"^PATH=(.*)$", text, re.MULTILINE)
    (job,) = [line for line in text.splitlines() if line[:1].isdigit()]
    fields = job.split(maxsplit=6)
    return path, fields[5], fields[6]


def test_cron_path_finds_the_installed_command(installation: Installation) -> None:
    path, user, _ = _cron_job(installation)
    assert user == "imagesync"  # the second install had the default user
    found = [installation.path(d) / "imagesync" for d in path.split(":")
             if (installation.path(d) / "imagesync").is_symlink()]
    assert found, f"no imagesync in the cron PATH {path}"
    assert (installation.root / os.readlink(found[0]).lstrip("/")).is_file()
    assert installation.path("/var/log/imagesync").is_dir()


def _run_cron(installation: Installation, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The cron command as cron runs it: sh -c, the entry's PATH (with the root's imagesync), its paths in the root."""
    path, _, command = _cron_job(installation)
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "imagesync").symlink_to(installation.imagesync)
    (shims / "shuf").write_text("#!/bin/sh\necho 0\n")  # no random sleep in a test
    (shims / "shuf").chmod(0o755)
    command = command.replace(" /var/", f" {installation.root}/var/").replace(">/var/", f">{installation.root}/var/")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"PATH": f"{shims}:{path}", "SHELL": "/bin/sh", "HOME": str(tmp_path), "TMPDIR": str(temp),
           "IMAGESYNC_CONFIG": str(config)}
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert list(temp.iterdir()) == [], "the run's temporary log must be removed"
    return done


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with build(tmp_path / "world") as w:
        w.publish(demo_images())
        yield w


def _config(world: DemoWorld, **lists: object) -> Path:
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    data = yaml.safe_load(path.read_text())
    data["lists"].update(lists)
    path.write_text(yaml.safe_dump(data))
    return path


def test_cron_run_that_went_well_prints_nothing(installation: Installation, world: DemoWorld,
                                               tmp_path: Path) -> None:
    done = _run_cron(installation, _config(world), tmp_path)
    assert (done.stdout, done.stderr) == ("", "")  # cron mails nothing
    log = installation.path("/var/log/imagesync/sync.log").read_text()
    assert "list=demo image=demo-alpine version=1.0 target=archive action=add result=done" in log
    report = json.loads(installation.path("/var/lib/imagesync/last-report.json").read_text())
    assert report["exit_code"] == 0


def test_cron_run_that_failed_reaches_the_mailbox(installation: Installation, world: DemoWorld,
                                                 tmp_path: Path) -> None:
    config = _config(world, gone={"url": world.server.url("/public/gone/image.list")})
    done = _run_cron(installation, config, tmp_path)
    assert done.stderr == ""
    head, *rest = done.stdout.splitlines()
    assert head.startswith("imagesync: sync exited 1, gc exited 0 (1: some lists or images failed")
    assert any("gone" in line and "404" in line for line in rest), done.stdout
    assert done.stdout.count("\n") > 2  # the whole log of the run, not just a line
    assert rest[-1] in installation.path("/var/log/imagesync/sync.log").read_text()


def test_cron_command_passes_shellcheck(installation: Installation, tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck missing (bin/test installs it)")
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n" + _cron_job(installation)[2] + "\n")
    done = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="logrotate's su needs root")
def test_logrotate_entry_rotates_as_the_user(installation: Installation, tmp_path: Path) -> None:
    log_dir = installation.path("/var/log/imagesync")
    (log_dir / "rotate-me.log").write_text("a line\n")
    entry = installation.path("/etc/logrotate.d/imagesync").read_text().replace("/var/log/", f"{log_dir.parent}/")
    config = tmp_path / "logrotate.conf"
    config.write_text(entry)
    done = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(config)],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert (log_dir / "rotate-me.log.1").read_text() == "a line\n"
