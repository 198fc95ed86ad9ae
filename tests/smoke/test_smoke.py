"""Smoke test: a full sync (add, update, retire) into whatever cloud the OS_* environment names.

Runs unchanged against a devstack (source its openrc first); without OS_AUTH_URL the dev cloud of the test suite
is started. The image lists come from the local HTTPS list server; the cloud needs no access to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from imagesync.demo.world import DemoWorld, demo_images
from tests.devcloud.fixture import DevCloud


def run_sync(config: Path, cloud: DevCloud) -> dict[str, Any]:
    # The credentials reach imagesync the way they reach it on a real site without auth: the OS_* environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | cloud.openstack_env()
    # -v: not even the debug log may show a secret.
    cmd = [sys.executable, "-m", "imagesync", "-v", "--config", str(config), "sync", "--format", "json"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert cloud.user.password not in result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_full_sync_add_update_retire(devcloud: DevCloud, world: DemoWorld) -> None:
    tag = f"imagesync-smoke-{uuid.uuid4().hex[:8]}"
    config = world.write_config({"targets": {"smoke": {"driver": "glance", "tag": tag, "visibility": "private",
                                                       "region": devcloud.region}}})
    glance = devcloud.glance()
    try:
        world.publish(demo_images("1.0"))
        first = run_sync(config, devcloud)
        assert [(a["action"], a["status"]) for a in first["actions"]] == [("add", "done")] * 2
        world.publish([demo_images("2.0")[0]])
        second = run_sync(config, devcloud)
        assert [(a["action"], a["image"], a["status"]) for a in second["actions"]] == [
            ("update", "demo-alpine", "done"), ("retire", "demo-debian", "done")]
        held = {(i["imagesync_image_id"], i["imagesync_version"]): i["status"]
                for i in glance.images.list(filters={"tag": [tag]})}
        assert held == {("demo-alpine", "2.0"): "active", ("demo-alpine", "1.0"): "deactivated",
                        ("demo-debian", "1.0"): "deactivated"}
        third = run_sync(config, devcloud)
        assert {a["action"] for a in third["actions"]} == {"keep"}
        assert third["summary"]["bytes_downloaded"] == 0
    finally:
        for image in list(glance.images.list(filters={"tag": [tag]})):
            glance.images.delete(image["id"])
