"""A push to the real test registry reaches the real dev cloud's Glance through ``imagesync listen``: the
registry sends its own notifications (docker-registry's ``notifications:`` endpoint, with the secret as a static
Authorization header, as the README tells operators to configure it), and a burst of pushes is one or two syncs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.demo.registry import RegistryUnavailable, free_port
from tests.devcloud.fixture import DevCloud
from tests.support.listening import SECRET, Listener, listen_config
from tests.support.oci_registry import RegistryServer
from tests.support.oci_site import Site, disk, new_site
from tests.support.tls import make_server_pki


class Env:
    def __init__(self, cloud: DevCloud, site: Site, listener: Listener, tag: str) -> None:
        self.cloud, self.site, self.listener, self.tag = cloud, site, listener, tag

    def images(self) -> list[Any]:
        return self.cloud.tagged(self.tag)


@pytest.fixture
def env(devcloud: DevCloud, tmp_path: Path) -> Iterator[Env]:
    port = free_port()  # the registry must know where to notify before it starts, and listen its URL
    events = f"http://127.0.0.1:{port}/v1/events/registry"
    server = RegistryServer(tmp_path / "registry", make_server_pki("imagesync listen test CA"), auth="htpasswd",
                            notifications_url=events, notification_headers={"Authorization": [f"Bearer {SECRET}"]})
    try:
        server.__enter__()
    except RegistryUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        with devcloud.test_tag() as tag:
            site = new_site(tmp_path, server)
            (tmp_path / "password").write_text(devcloud.user.password)
            (tmp_path / "password").chmod(0o600)
            target = {"driver": "glance", "region": devcloud.region, "tag": tag, "retire": {"mode": "delete"},
                      "visibility": "private",
                      "auth": devcloud.password_auth(password_file=tmp_path / "password")}
            site.config(targets={"cloud": target})
            data = yaml.safe_load(site.config_file.read_text())
            data.update(listen_config(tmp_path, port=port, debounce=3, max_wait=30))
            site.config_file.write_text(yaml.safe_dump(data))
            with Listener(site.config_file) as listener:
                yield Env(devcloud, site, listener, tag)
    finally:
        server.__exit__(None, None, None)

def wait_for_glance(env: Env, version: str, since: float) -> float:
    """Seconds from ``since`` until Glance holds an active image of ``version`` with the test's tag."""
    while time.monotonic() - since < 90:
        if any(i["imagesync_version"] == version and i["status"] == "active" for i in env.images()):
            return time.monotonic() - since
        time.sleep(0.5)
    raise AssertionError(f"{version} not in Glance after 90 s:\n{env.listener.log()}")


def test_a_push_reaches_glance_within_a_minute_and_a_burst_of_twenty_is_one_or_two_syncs(env: Env) -> None:
    pushed_at = time.monotonic()
    first = env.site.push("1.0", disk(b"first"))
    assert wait_for_glance(env, first.digest, pushed_at) < 60
    assert len(env.listener.finished()) == 1
    assert "event=registry queued=reg" in env.listener.log()

    burst_at = time.monotonic()
    for n in range(20):  # the same tag re-pushed 20 times (each push signed: 40 manifests and their blobs)
        last = env.site.push("1.0", disk(f"build {n}".encode()))
    wait_for_glance(env, last.digest, burst_at)
    time.sleep(4)  # past the debounce: a trailing event would have started its run by now
    env.listener.wait_for_run(count=2)
    later = env.listener.finished()[1:]
    assert 1 <= len(later) <= 2, env.listener.log()
    assert all("finished exit=0" in line for line in later), env.listener.log()
    assert [i["imagesync_version"] for i in env.images()] == [last.digest]
