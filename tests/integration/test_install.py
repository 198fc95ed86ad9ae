"""bin/install into a temporary root (DESTDIR style), from the checkout and then from the wheel (see
tests/support/install.py): what lands where with which modes and owners, that the installed command works, and
that installing again keeps the operator's files. Owners are checked when the tests run as root (as in CI)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from imagesync.demo.world import build, demo_images
from tests.support.install import OPERATOR_EDIT, REPO, Dists, Installation, installed_env, run_install

AS_ROOT = os.geteuid() == 0
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
SHIPPED = ["etc/imagesync.yaml", "etc/image-lists.conf", "etc/mapping.json", "etc/logrotate/imagesync",
           "etc/systemd/imagesync.service", "etc/systemd/imagesync.timer", "cron/imagesync", "bin/install",
           "LICENSE", "README.md"]


def _owner(path: Path) -> tuple[str, str]:
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name


def test_sdist_and_wheel_carry_the_operator_files(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    assert set(SHIPPED) <= set(members)
    assert members["bin/install"].mode & 0o111, "bin/install must stay executable in the sdist"
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"imagesync-{VERSION}.dist-info/METADATA").decode()
    share = f"imagesync-{VERSION}.data/data/share/imagesync/"
    assert {share + name for name in SHIPPED} <= names
    assert f"imagesync-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata
    assert (REPO / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]


def test_layout_modes_and_owners(installation: Installation) -> None:
    user, group = ("nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name) if AS_ROOT else ("", "")
    expected = {
        "/etc/imagesync": (0o750, ("root", group)),
        "/etc/imagesync/imagesync.yaml": (0o640, ("root", group)),
        "/etc/imagesync/mapping.json": (0o640, ("root", group)),
        "/etc/imagesync/image-lists.conf": (0o640, ("root", "root")),  # made again by the second install, no user
        "/var/lib/imagesync": (0o700, (user, group)),
        "/var/cache/imagesync": (0o750, (user, group)),
        "/var/log/imagesync": (0o750, (user, group)),
        "/etc/logrotate.d/imagesync": (0o644, ("root", "root")),
        "/etc/cron.d/imagesync": (0o644, ("root", "root")),
        "/usr/local/lib/systemd/system/imagesync.service": (0o644, ("root", "root")),
        "/usr/local/lib/systemd/system/imagesync.timer": (0o644, ("root", "root")),
    }
    for path, (mode, owner) in expected.items():
        assert stat.S_IMODE(installation.path(path).stat().st_mode) == mode, path
        if AS_ROOT:
            assert _owner(installation.path(path)) == owner, path
    link = installation.path("/usr/local/bin/imagesync")
    assert os.readlink(link) == "/opt/imagesync/bin/imagesync"  # absolute, as on the real machine
    for name in ("imagesync.yaml", "mapping.json", "image-lists.conf"):
        shipped = (REPO / "etc" / name).read_text()
        assert installation.path(f"/etc/imagesync/{name}").read_text().startswith(shipped), name


def test_installed_command_reports_its_version_and_runs_the_demo(installation: Installation) -> None:
    version = subprocess.run([installation.imagesync, "--version"], capture_output=True, text=True,
                             env=installed_env(), check=False)
    assert (version.returncode, version.stdout) == (0, f"imagesync {VERSION}\n")
    demo = subprocess.run([installation.imagesync, "demo"], capture_output=True, text=True, timeout=300,
                          env=installed_env(), check=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "retire          archive: demo/demo-debian 1.0 (removed from list demo) -> done" in demo.stdout
    assert f"1. read {installation.path('/opt/imagesync/share/imagesync/README.md')}, sections" in demo.stdout


@pytest.mark.skipif(not AS_ROOT, reason="runs imagesync as the installed user (needs root)")
def test_installed_user_can_check_and_plan(installation: Installation) -> None:
    # README: `runuser -u imagesync -- imagesync check` (here the test's user, nobody, owns the directories).
    with tempfile.TemporaryDirectory(prefix="imagesync-world-") as where, build(Path(where)) as world:
        os.chmod(where, 0o755)
        world.publish(demo_images())
        config = yaml.safe_load(world.write_config().read_text())
        config.update(state_dir=str(installation.path("/var/lib/imagesync")),
                      cache_dir=str(installation.path("/var/cache/imagesync")),
                      targets={"archive": {"driver": "directory", "path": str(Path(where) / "archive")}})
        (Path(where) / "imagesync.yaml").write_text(yaml.safe_dump(config))
        for path in [Path(where), *Path(where).rglob("*")]:
            os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
        out = {}
        for command in ("check", "plan", "sync"):  # the last as the schedule runs it: state and cache written
            done = subprocess.run(["runuser", "-u", "nobody", "--", str(installation.imagesync), "--config",
                                   f"{where}/imagesync.yaml", command], capture_output=True, text=True,
                                  timeout=120, env=installed_env(), check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            out[command] = done.stdout
        assert "add             archive: demo/demo-alpine 1.0 (new image) -> planned" in out["plan"]
        assert _owner(installation.path("/var/lib/imagesync/state.db"))[0] == "nobody"


def test_installed_command_completes(installation: Installation) -> None:
    # README: _IMAGESYNC_COMPLETE=bash_source imagesync > /etc/bash_completion.d/imagesync
    done = subprocess.run([installation.imagesync], env=installed_env(_IMAGESYNC_COMPLETE="bash_source"),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "complete -o nosort -F _imagesync_completion imagesync" in done.stdout


def test_second_install_keeps_what_the_operator_changed(installation: Installation) -> None:
    first, second = installation.first.stdout, installation.second.stdout
    assert "creating the venv" in first and "creating the venv" not in second
    assert installation.path("/etc/imagesync/imagesync.yaml").read_text().endswith(OPERATOR_EDIT)
    assert "kept /etc/imagesync/imagesync.yaml (it differs from the shipped" in second
    assert "installed /etc/imagesync/image-lists.conf" in second  # deleted by the operator: back again
    assert "/etc/imagesync/mapping.json" not in second  # unchanged: nothing to say
    assert f"installed imagesync {VERSION} in /opt/imagesync" in second
    # The second install chose cron beside the enabled timer: it says so instead of leaving two schedules silently.
    assert "warning: imagesync.timer runs imagesync too" in second
    assert "note: ownership left as it is (user imagesync does not exist here" in second


def test_options_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "root"
    helped = run_install(REPO / "bin" / "install", root, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: bin/install [--root DIR]")
    bad = run_install(REPO / "bin" / "install", root, "--scheduler", "weekly")
    assert (bad.returncode, bad.stderr) == (1, "bin/install: error: --scheduler must be auto, systemd, cron or none\n")
    unknown = run_install(REPO / "bin" / "install", root, "--destdir", "x")
    assert unknown.returncode == 2 and "unknown argument: --destdir" in unknown.stderr
    missing = run_install(REPO / "bin" / "install", root, "--wheel", str(tmp_path / "none.whl"))
    assert missing.returncode == 1 and "none.whl: no such file" in missing.stderr
    alone = tmp_path / "copy" / "bin" / "install"
    alone.parent.mkdir(parents=True)
    shutil.copy(REPO / "bin" / "install", alone)
    lost = run_install(alone, root)
    assert lost.returncode == 1 and "is not a source tree: give --wheel FILE" in lost.stderr
    assert not (root / "opt").exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck missing (bin/test installs it)")
def test_shell_scripts_pass_shellcheck() -> None:
    scripts = ["bin/install", "bin/demo", "bin/test", "bin/lib/venv.bash"]
    done = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout
