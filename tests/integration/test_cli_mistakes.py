"""Mistakes caught before they cost a run, as operators meet them: the real CLI in a subprocess, a real HTTPS list
server, a pseudo-terminal where a person would be watching."""

from __future__ import annotations

import json
import os
import pty
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from imagesync.demo.world import DemoImage, DemoWorld, demo_images

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(world: DemoWorld) -> DemoWorld:
    """The shared demo world (tests/conftest.py) with the demo list published."""
    world.publish(demo_images())
    return world


def env(config: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "IMAGESYNC_CONFIG": str(config)}


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "imagesync", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env(config))


def run_on_terminal(*args: str, config: Path) -> tuple[int, str, float]:
    """Run with a pseudo-terminal as stdout (stderr a pipe); return exit code, terminal output, wall seconds."""
    master, slave = pty.openpty()
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "imagesync", *args], stdout=slave, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env=env(config))
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end of the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert child.stderr is not None
    child.stderr.read()
    code = child.wait(timeout=120)
    elapsed = time.monotonic() - started
    reader.join(timeout=10)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace"), elapsed


# -- verify --------------------------------------------------------------------------------------------------


def test_verify_url_with_ca_dir_trusts_it_for_the_https_fetch_too(world: DemoWorld, tmp_path: Path) -> None:
    # The server's certificate comes from the demo CA, which only --ca-dir names (no config file at all).
    world.server.put("/public/demo.list", world.publish(demo_images()))
    result = run("verify", world.server.url("/public/demo.list"), "--ca-dir", str(world.ca_dir),
                 config=tmp_path / "absent.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("VERIFIED")


def test_verify_unknown_name_lists_the_configured_names(world: DemoWorld) -> None:
    config = world.write_config()
    data = yaml.safe_load(config.read_text())
    data["lists"]["other"] = {"url": world.server.url("/store/vo/other/image.list")}
    config.write_text(yaml.safe_dump(data))
    result = run("verify", "dmeo", config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dmeo: not a configured list, an existing file or a URL (configured lists: demo, other)" in result.stderr


# -- patience at a terminal -------------------------------------------------------------------------------------


def refused_url() -> str:
    """An https URL on 127.0.0.1 whose port nobody listens on: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}/image.list"


def refused_config(tmp_path: Path) -> Path:
    path = tmp_path / "imagesync.yaml"
    path.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache"),
        # Two retries: 1 s + 2 s of backoff without a terminal, enough to tell apart and short enough to wait for.
        "download": {"retries": 2, "min_free_space": "1MiB"},
        "lists": {"gone": {"url": refused_url()}},
        "targets": {"nowhere": {"driver": "noop"}},
    }))
    return path


@pytest.mark.parametrize("command", [("lists",), ("plan",), ("check",), ("verify", "gone")])
def test_interactive_commands_give_up_quickly_at_a_terminal(tmp_path: Path, command: tuple[str, ...]) -> None:
    code, output, elapsed = run_on_terminal(*command, config=refused_config(tmp_path))
    assert code != 0, output
    assert "connection refused" in output.lower() and "gave up after 2 attempts" in output, output
    assert elapsed < 4.0  # one retry after 0.5 s; interpreter start-up is the rest


def test_without_a_terminal_the_configured_retries_stay(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run("lists", "--format", "json", config=refused_config(tmp_path))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    (entry,) = json.loads(result.stdout)["lists"]
    assert "gave up after 3 attempts" in entry["error"]
    assert elapsed >= 3.0  # 1 s + 2 s of backoff, as configured for cron


# -- Keystone unreachable ----------------------------------------------------------------------------------------


def test_unreachable_keystone_is_one_clean_line_naming_its_url(tmp_path: Path) -> None:
    auth_url = refused_url().replace("https://", "http://").replace("/image.list", "/v3")
    config = tmp_path / "imagesync.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache"),
        "targets": {"cloud": {"driver": "glance", "visibility": "private", "auth": {
            "auth_url": auth_url, "username": "imagesync", "password": "pw", "project_name": "imagesync",
            "user_domain_name": "Default", "project_domain_name": "Default"}}},
    }))
    expected = f"target cloud: list images: cannot reach Keystone at {auth_url}: connection refused"
    plan = run("plan", config=config)
    assert plan.returncode == 3, plan.stdout + plan.stderr
    assert f"target cloud: FAILED: {expected}\n" in plan.stdout
    check = run("check", config=config)
    assert f"FAIL  target  cloud: {expected}\n" in check.stdout
    for output in (plan.stdout, plan.stderr, check.stdout):
        assert "HTTPConnectionPool" not in output and "NewConnectionError" not in output


# -- directories and mapping files: configuration errors before the run ----------------------------------------


def as_mortal(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    """Run where permission bits apply: root would write through mode 0555."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: mode 0555 would not stop root writing")
        prefix = (setpriv, "--bounding-set", "-dac_override,-dac_read_search")
    cmd = [*prefix, sys.executable, "-m", "imagesync", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env(config))


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("imagesync: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def directory_config(world: DemoWorld, **paths: str) -> Path:
    return world.write_config({**paths, "targets": {"archive": {"driver": "directory",
                                                                "path": str(world.root / "archive")}}})


@pytest.mark.parametrize("key", ["state_dir", "cache_dir"])
def test_unwritable_directory_is_a_configuration_error_naming_path_and_fix(world: DemoWorld, key: str) -> None:
    locked = world.root / "locked"
    locked.mkdir(mode=0o555)
    wanted = locked / key
    config = directory_config(world, **{key: str(wanted)})
    result = as_mortal("sync", config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert error_line(result) == (
        f"imagesync: error: {config}: {key}: {wanted} cannot be created by user {user} in {locked}: Permission "
        f"denied (create it: install -d -o {user} -m {'0700' if key == 'state_dir' else '0750'} {wanted})")
    assert "unexpected" not in result.stderr
    # An existing directory the user may not write: the fix is its ownership.
    locked.chmod(0o755)
    wanted.mkdir(mode=0o555)
    again = as_mortal("sync", config=config)
    assert again.returncode == 2, again.stdout + again.stderr
    assert error_line(again).endswith(f"{key}: {wanted} is not writable by user {user}: Permission denied "
                                      f"(give it to that user: chown -R {user} {wanted})")
    # A dry run writes neither: it plans, and warns that the real run would stop.
    plan = as_mortal("plan", config=config)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"{key}: {wanted} is not writable by user {user}" in plan.stderr
    assert "(sync would stop here with exit 2)" in plan.stderr


def glance_config(world: DemoWorld, mapping: Path) -> Path:
    """A Glance target sharing by VO whose Keystone is not there: checks of the config come before contacting it."""
    auth_url = refused_url().replace("https://", "http://").replace("/image.list", "/v3")
    return world.write_config({"targets": {"cloud": {
        "driver": "glance", "visibility": "shared", "projects_file": str(mapping),
        "auth": {"auth_url": auth_url, "username": "imagesync", "password": "pw", "project_name": "imagesync",
                 "user_domain_name": "Default", "project_domain_name": "Default"}}}})


@pytest.mark.parametrize("command", ["sync", "plan"])
def test_missing_projects_file_is_a_configuration_error(world: DemoWorld, command: str) -> None:
    mapping = world.root / "mapping.json"
    config = glance_config(world, mapping)
    result = run(command, config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert error_line(result) == (
        f"imagesync: error: targets.cloud.projects_file: {mapping} does not exist (write the VO -> project mapping "
        'there: {"<VO>": {"project": "<project id or name>", "domain": "<domain name, optional>"}})')


def test_malformed_projects_file_is_a_configuration_error(world: DemoWorld) -> None:
    mapping = world.root / "mapping.json"
    mapping.write_text('{"demo.vo": {"tenant": ""}}')
    result = run("sync", config=glance_config(world, mapping))
    assert result.returncode == 2, result.stdout + result.stderr
    assert error_line(result) == (f"imagesync: error: targets.cloud.projects_file: {mapping}: demo.vo: tenant must "
                                  "be a non-empty string, quoted in YAML (the project is named by project, tenant, "
                                  'project_id, id or name) (expected {"<VO>": {"project": "<project id or name>", '
                                  '"domain": "<domain name, optional>"}})')


# -- check ---------------------------------------------------------------------------------------------------------


def check_lines(result: subprocess.CompletedProcess[str], area: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line[6:].startswith(area)]


def test_check_tests_state_and_cache_dirs_are_writable_and_leaves_nothing(world: DemoWorld) -> None:
    state, cache = world.root / "state", world.root / "cache"
    state.mkdir()
    cache.mkdir(mode=0o555)
    result = as_mortal("check", config=directory_config(world, state_dir=str(state), cache_dir=str(cache)))
    assert result.returncode == 1, result.stdout + result.stderr
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert check_lines(result, "dir") == [
        f"OK    dir     state_dir: {state} writable",
        f"FAIL  dir     cache_dir: cache_dir: {cache} is not writable by user {user}: Permission denied (give it "
        f"to that user: chown -R {user} {cache})"]
    assert list(state.iterdir()) == [] and list(cache.iterdir()) == []
    # A state_dir still to be created is fine where it can be created; check does not create it.
    fresh = directory_config(world, state_dir=str(world.root / "new" / "state"))
    created = run("check", config=fresh)
    assert check_lines(created, "dir")[0] == f"OK    dir     state_dir: {world.root / 'new' / 'state'} writable"
    assert not (world.root / "new").exists()


def test_check_tests_the_projects_file_and_that_every_subscribed_vo_is_mapped(world: DemoWorld) -> None:
    images = demo_images()
    world.publish([images[0], DemoImage(images[1].identifier, images[1].version, images[1].title, images[1].data,
                                        vo="other.vo")])
    mapping = world.root / "mapping.json"
    config = glance_config(world, mapping)
    missing = run("check", config=config)
    assert check_lines(missing, "mapping") == [
        f"FAIL  mapping cloud: targets.cloud.projects_file: {mapping} does not exist (write the VO -> project "
        'mapping there: {"<VO>": {"project": "<project id or name>", "domain": "<domain name, optional>"}})']
    mapping.write_text("{not json")
    broken = run("check", config=config)
    assert check_lines(broken, "mapping")[0].startswith(f"FAIL  mapping cloud: targets.cloud.projects_file: "
                                                        f"{mapping}: not valid JSON")
    mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha"}}))
    partial = run("check", config=config)
    assert partial.returncode == 1
    assert check_lines(partial, "mapping") == [
        f"FAIL  mapping cloud: 1 VO(s) of the subscribed lists have no project in {mapping}: VO other.vo (list demo) "
        "(add them, or their images fail)"]
    mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha"}, "other.vo": {"project": "vo-beta"}}))
    complete = run("check", config=config)
    assert check_lines(complete, "mapping") == [
        f"OK    mapping cloud: {mapping}: 2 VO(s), every VO of the subscribed lists mapped (2)"]


def test_every_planned_action_shows_where_it_is_in_the_target(world: DemoWorld) -> None:
    config = directory_config(world)
    alpine, debian = demo_images()
    assert run("sync", config=config).returncode == 0
    world.publish([alpine])
    result = run("plan", "--format", "json", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = {(a["action"], a["image"], a["version"]): {k: a[k] for k in ("image_name", "vo", "format", "size")}
             for a in json.loads(result.stdout)["actions"]}
    assert shown == {
        ("keep", "demo-alpine", "1.0"): {"image_name": "demo/demo-alpine-1.0.raw", "vo": "demo.vo", "format": "raw",
                                         "size": len(alpine.data)},
        # Gone from the list: shown as the target holds it.
        ("retire", "demo-debian", "1.0"): {"image_name": "demo/demo-debian-1.0.raw", "vo": "demo.vo",
                                           "format": "raw", "size": len(debian.data)},
    }
    text = run("plan", config=config).stdout
    assert ('  retire          archive: demo/demo-debian 1.0 (removed from list demo) -> planned  '
            '[name "demo/demo-debian-1.0.raw", vo demo.vo, format raw, 64.0 KiB]') in text
