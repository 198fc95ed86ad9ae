"""The CLI as operators run it (a real subprocess) against the demo world: real HTTPS, real signed lists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.demo.server import Fault
from imagesync.demo.world import LIST_PATH, DemoWorld, demo_images
from tests.devcloud.fixture import DevCloud

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(world: DemoWorld) -> DemoWorld:
    """The shared demo world (tests/conftest.py) with the demo list published."""
    world.publish(demo_images())
    return world


def run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "imagesync", *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def add_lists(world: DemoWorld, lists: dict[str, object]) -> Path:
    path = world.write_config()
    data = yaml.safe_load(path.read_text())
    data["lists"].update(lists)
    path.write_text(yaml.safe_dump(data))
    return path


def test_lists_text(world: DemoWorld) -> None:
    result = run("lists", config=world.write_config())
    assert result.returncode == 0, result.stderr
    assert "demo: OK" in result.stdout
    assert "signer:  /DC=org/DC=imagesync-demo/O=Hosts/CN=lists.demo.invalid" in result.stdout
    assert "images:  2" in result.stdout
    assert "list=demo result=ok" in result.stderr
    assert world.token not in result.stdout + result.stderr


def test_lists_json_one_bad_list_others_shown(world: DemoWorld) -> None:
    world.server.put("/public/plain.list", b'{"not": "signed"}')
    config = add_lists(world, {
        "missing": {"url": world.server.url("/store/vo/none/image.list")},
        "plain": {"url": world.server.url("/public/plain.list"), "signature": "none"},
    })
    result = run("lists", "--format", "json", config=config)
    assert result.returncode == 1
    entries = {e["name"]: e for e in json.loads(result.stdout)["lists"]}
    assert entries["demo"]["status"] == "ok" and entries["demo"]["images"] == 2
    assert entries["demo"]["signer"]["ca"] == "/DC=org/DC=imagesync-demo/CN=imagesync Demo CA"
    assert entries["missing"]["status"] == "failed"
    assert entries["missing"]["error"].startswith("missing: ")
    assert entries["plain"]["status"] == "failed" and entries["plain"]["unsigned"] is True
    assert "hv:imagelist" in entries["plain"]["error"]


def test_unsigned_list_is_marked(world: DemoWorld) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.support.samples import hepix_list
    now = datetime.now(UTC)
    world.server.put("/public/unsigned.list", hepix_list(identifier="u", created=now, expires=now + timedelta(days=1),
                                                         endorser_dn="/CN=x", endorser_ca="/CN=y"))
    config = add_lists(world, {"unsigned": {"url": world.server.url("/public/unsigned.list"), "signature": "none"}})
    text = run("lists", config=config)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "unsigned: OK  UNSIGNED" in text.stdout
    data = json.loads(run("lists", "--format", "json", config=config).stdout)
    assert [e["unsigned"] for e in data["lists"]] == [False, True]


def test_verify_url_with_token_in_userinfo_never_shows_token(world: DemoWorld) -> None:
    config = world.write_config()
    url = world.list_url.replace("https://", f"https://{world.token}:x-oauth-basic@")
    result = run("-v", "verify", url, "--format", "json", config=config)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verified"] is True and data["error"] is None
    assert data["list"]["images"] == 2 and data["signer"]["dn"].endswith("CN=lists.demo.invalid")
    assert data["source"] == world.list_url
    assert world.token not in result.stdout + result.stderr


def test_verify_wrong_token_and_bad_endorser(world: DemoWorld) -> None:
    config = world.write_config()
    bad = run("-v", "verify", world.list_url.replace("https://", "https://WRONGTOKEN99:x-oauth-basic@"), config=config)
    assert bad.returncode == 1
    assert "NOT VERIFIED" in bad.stdout and "401" in bad.stdout
    assert "WRONGTOKEN99" not in bad.stdout + bad.stderr
    other = run("verify", "demo", "--endorser-dn", "/DC=org/CN=someone else", "--endorser-ca", "/DC=org/CN=CA",
                config=config)
    assert other.returncode == 2 and "configured with another endorser" in other.stderr


def test_verify_file_with_options(world: DemoWorld, tmp_path: Path) -> None:
    signed = world.publish(demo_images("2.0"))
    path = tmp_path / "image.list"
    path.write_bytes(signed)
    ok = run("verify", str(path), "--ca-dir", str(world.ca_dir), "--crl", "require",
             "--endorser-dn", "/DC=org/DC=imagesync-demo/O=Hosts/CN=lists.demo.invalid",
             "--endorser-ca", "CN=imagesync Demo CA,DC=imagesync-demo,DC=org")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"VERIFIED  {path}")
    wrong = run("verify", str(path), "--ca-dir", str(world.ca_dir), "--endorser-dn", "/CN=other", "--endorser-ca",
                "/CN=x")
    assert wrong.returncode == 1 and "not by the configured endorser" in wrong.stdout


def test_verify_named_list_after_server_errors(world: DemoWorld) -> None:
    world.server.inject(LIST_PATH, Fault.status(503, headers={"Retry-After": "1"}))
    result = run("verify", "demo", config=world.write_config())
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.server.hits(LIST_PATH) == 2


def test_config_error_exit_2_one_line(tmp_path: Path) -> None:
    path = tmp_path / "imagesync.yaml"
    path.write_text("download:\n  concurency: 3\n")
    result = run("lists", config=path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"imagesync: error: {path}: download.concurency: unknown key "
                                    "(did you mean concurrency?)")


def test_missing_config(tmp_path: Path) -> None:
    result = run("lists", config=tmp_path / "none.yaml")
    assert result.returncode == 2 and "file not found" in result.stderr


def _without_checkout_path() -> dict[str, str]:
    # As in an operator's shell: bin/demo must work from .venv alone.
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_") and k != "PYTHONPATH"}


def test_demo_command() -> None:
    # README: bin/demo (installs imagesync into .venv, editable, then runs `imagesync demo`)
    _venv_up_to_date()  # pip's own output is not the demo's
    result = subprocess.run([str(REPO / "bin" / "demo")], capture_output=True, text=True, env=_without_checkout_path(),
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""  # the story only: log lines stay out of it without -v
    out = result.stdout
    assert "add             archive: demo/demo-alpine 1.0 (new image) -> done" in out
    assert "update          archive: demo/demo-alpine 2.0 (new version 2.0 (was 1.0)) -> done" in out
    assert "retire          archive: demo/demo-debian 1.0 (removed from list demo) -> done" in out
    assert "list demo: FAILED: demo: content does not match the signed digest (tampered)" in out
    assert "demo/demo-alpine 2.0 (active) demo/demo-alpine-2.0.qcow2" in out
    assert out.count("exit code 0: success: everything was done") == 2
    assert "exit code 3: nothing could be done: no list was fetched and verified" in out
    steps = out[out.index("Next steps:"):]
    assert f"{REPO / 'README.md'}, sections \"Install\" and \"Scheduling\"" in steps
    assert f"the example config {REPO / 'etc' / 'imagesync.yaml'} to /etc/imagesync/" in steps


def test_demo_verbose_shows_the_log_lines() -> None:
    result = run("-v", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "list=demo image=demo-alpine version=1.0 target=archive action=add result=done" in result.stderr
    assert "action=add" not in result.stdout


def _demo_images(devcloud: DevCloud, stdout: str) -> list[Any]:
    tag = next(line.split("tag ")[1].split(",")[0] for line in stdout.splitlines() if "Glance, tag" in line)
    return list(devcloud.glance().images.list(filters={"tag": [tag]}))


def _demo_env(devcloud: DevCloud) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | devcloud.openstack_env()


def test_demo_into_glance(devcloud: DevCloud) -> None:
    result = subprocess.run([sys.executable, "-m", "imagesync", "demo", "--glance"], capture_output=True, text=True,
                            env=_demo_env(devcloud), timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "update          cloud: demo/demo-alpine 2.0 (new version 2.0 (was 1.0)) -> done" in result.stdout
    assert devcloud.user.password not in result.stdout + result.stderr
    assert "removed the 3 image(s) the demo made in Glance" in result.stdout
    assert _demo_images(devcloud, result.stdout) == []


def test_demo_into_glance_interrupted_removes_its_images(devcloud: DevCloud) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "imagesync", "demo", "--glance"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_demo_env(devcloud) | {"PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # until the first round has uploaded both images
        seen.append(line)
        if line.startswith("target now holds:"):
            break
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=120)
    stdout = "".join(seen) + out
    assert proc.returncode != 0, stdout + err
    assert "removed the 2 image(s) the demo made in Glance" in stdout, stdout + err
    assert _demo_images(devcloud, stdout) == []


def test_bin_demo_glance_from_the_checkout_keeps_the_venv_editable(devcloud: DevCloud) -> None:
    # README: bin/demo -v --glance. No OS_*: it starts the checkout's own dev cloud (tests/devcloud), which needs
    # the editable install that bin/test makes too; bin/demo used to replace it with a copy that could not find it.
    # And it leaves an up-to-date .venv alone: pip rewriting it would break the imports of bin/test's other worker.
    before = _venv_up_to_date()
    result = subprocess.run([str(REPO / "bin" / "demo"), "-v", "--glance"], capture_output=True, text=True,
                            env=_without_checkout_path(), timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting a local Keystone + Glance" in result.stdout
    assert "target=cloud action=add result=done" in result.stderr  # bin/demo passes -v on to imagesync
    assert "removed the 3 image(s) the demo made in Glance" in result.stdout
    python = REPO / ".venv" / "bin" / "python"
    direct_url = subprocess.run([python, "-I", "-c", "import importlib.metadata as m; "
                                 "print(m.distribution('imagesync').read_text('direct_url.json'))"],
                                capture_output=True, text=True, check=True).stdout
    assert json.loads(direct_url)["dir_info"] == {"editable": True}
    assert _installed_record() == before


def _venv_up_to_date() -> tuple[int, int]:
    """Bring .venv up to date as bin/demo would (a no-op after bin/test); return _installed_record()."""
    subprocess.run(["bash", "-c", '. bin/lib/venv.bash && ensure_venv ""'], cwd=REPO, env=_without_checkout_path(),
                   check=True, capture_output=True, timeout=600)
    return _installed_record()


def _installed_record() -> tuple[int, int]:
    (record,) = (REPO / ".venv" / "lib").glob("python3*/site-packages/imagesync-*.dist-info/RECORD")
    return record.stat().st_ino, record.stat().st_mtime_ns


def test_check_reports_every_area(world: DemoWorld) -> None:
    config = add_lists(world, {"missing": {"url": world.server.url("/store/vo/none/image.list")}})
    data = yaml.safe_load(config.read_text())
    data["targets"] = {"archive": {"driver": "directory", "path": str(world.root / "archive")}}
    config.write_text(yaml.safe_dump(data))
    result = run("check", config=config)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("OK    ca_dir") and "1 CAs, 1 CRLs, crl: require" in line for line in lines)
    assert any(line.startswith("OK    list    demo: verified, 2 images") for line in lines)
    assert any(line.startswith("FAIL  list    missing: missing: ") for line in lines)
    assert any(line.startswith("OK    target  archive: reachable, 0 image(s)") for line in lines)
    assert any(line.startswith("OK    tool    qemu-img") for line in lines)
    data = json.loads(run("check", "--format", "json", config=config).stdout)
    assert data["ok"] is False and {c["area"] for c in data["checks"]} >= {"config", "ca_dir", "list", "target",
                                                                             "disk", "tool"}
    assert world.token not in result.stdout + result.stderr
