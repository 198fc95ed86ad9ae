"""Every command the README shows is run by a test (issue 8, point 10).

Each ``sh`` block of README.md is read line by line. A line starting with ``imagesync`` is run here, in README order,
against a sandbox that looks like the README's own site: the README's first configuration (its YAML block, with
only the addresses, files and credentials of this machine put in), an AppDB-named signer and CA serving the
``fedcloud`` list over HTTPS with a token, the dev cloud's Glance as ``mycloud``, and the README's mapping file. Any
other command (installing, scheduling, the two set-up commands) must name the test that runs it in ``ELSEWHERE``;
a command the README gains without either fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo.world import LIST_PATH, DemoImage, DemoWorld, build, demo_images
from tests.devcloud.fixture import DevCloud

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# Commands that need a machine of their own (a root file system, systemd, a fresh checkout): the test that runs each.
INSTALL_TESTS = "tests/integration/test_install.py"
ELSEWHERE: dict[str, str] = {
    "bin/demo": "tests/integration/test_cli.py::test_demo_command",
    "bin/test": ".ci/run",  # CI runs exactly bin/test on every submission
    # Installed into a temporary root (--root) from the checkout, then from the wheel; the commands as root would run
    # them are the same script with the same options.
    "bin/install": "tests/support/install.py::_install_twice",
    "bin/install --scheduler systemd --enable": "tests/support/install.py::_install_twice",
    "bin/install --scheduler cron --enable": "tests/support/install.py::_install_twice",
    "runuser -u imagesync -- imagesync check": f"{INSTALL_TESTS}::test_installed_user_can_check_and_plan",
    "runuser -u imagesync -- imagesync plan": f"{INSTALL_TESTS}::test_installed_user_can_check_and_plan",
    "_IMAGESYNC_COMPLETE=bash_source imagesync > /etc/bash_completion.d/imagesync":
        f"{INSTALL_TESTS}::test_installed_command_completes",
}
# The signed request of "Syncs on events", run as written (its paths and URL pointed at a test listener).
ELSEWHERE.update(dict.fromkeys(
    [shlex.join(shlex.split(line)) for line in (
        """body='{"source": "egi-fedcloud"}'""",
        """sig=$(printf %s "$body" | openssl dgst -sha256 -hmac "$(cat /etc/imagesync/listen.secret)" -r """
        """| cut -d' ' -f1)""",
        """curl -sS -H "X-Imagesync-Signature: sha256=$sig" -d "$body" http://127.0.0.1:8780/v1/sync""")],
    "tests/integration/test_listen.py::test_the_readmes_signed_request_is_accepted"))
APPDB_CA = x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "ORG"),
                      x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "SEE-GRID"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "SEE-GRID CA 2013")])
APPDB = x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "EU"),
                   x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "EGI"),
                   x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hosts"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "EGI.eu"),
                   x509.NameAttribute(NameOID.COMMON_NAME, "appdb.egi.eu")])


def readme_commands() -> list[str]:
    """Every command of every ``sh`` block, continuation lines joined, comments dropped, in README order."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def _yaml_block(heading: str) -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return dict(yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1)))  # type: ignore[union-attr]


def _json_block(heading: str) -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return dict(json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1)))  # type: ignore[union-attr]


def test_every_command_is_run_by_a_test() -> None:
    commands = readme_commands()
    assert "imagesync sync" in commands and "bin/test" in commands
    elsewhere = {shlex.join(shlex.split(command)) for command in ELSEWHERE}
    unrun = [c for c in commands if not c.startswith("imagesync ") and c not in elsewhere]
    assert unrun == [], "README commands no test runs: add them to ELSEWHERE with the test that runs them"
    for node in set(ELSEWHERE.values()):
        path, _, name = node.partition("::")
        assert (REPO / path).is_file(), node
        assert not name or re.search(rf"^def {name}\b", (REPO / path).read_text(), re.M), node


FIRST_CONFIG = "## A first configuration"


@pytest.fixture
def site(vo_access: DevCloud, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], DemoWorld]]:
    """The README's site in ``tmp_path``: its config and mapping with this machine's addresses and credentials."""
    cloud = vo_access
    with build(tmp_path / "world", ca_subject=APPDB_CA, signer_subject=APPDB) as world:
        images = [DemoImage(i.identifier, i.version, i.title, i.data, vo="fedcloud.egi.eu") for i in demo_images()]
        (tmp_path / "image.list").write_bytes(world.publish(images))
        etc = tmp_path / "etc"
        etc.mkdir()
        config = _readme_config(tmp_path, etc, world, cloud)
        env = {**os.environ, "IMAGESYNC_CONFIG": str(config)}
        yield tmp_path, env, world
        glance = cloud.glance()
        tag = yaml.safe_load(config.read_text())["targets"]["mycloud"]["tag"]
        for image in list(glance.images.list(filters={"tag": [tag]})):
            glance.images.delete(image["id"])


def _readme_config(root: Path, etc: Path, world: DemoWorld, cloud: DevCloud) -> Path:
    data = _yaml_block(FIRST_CONFIG)
    (etc / "token").write_text(world.token)
    (etc / "token").chmod(0o600)
    (etc / "os-password").write_text(cloud.user.password)
    (etc / "os-password").chmod(0o600)
    mapping = _json_block(FIRST_CONFIG)
    mapping["fedcloud.egi.eu"]["project"] = "vo-alpha"  # the dev cloud's name for the VO's project
    (etc / "mapping.json").write_text(json.dumps(mapping))
    fedcloud = data["lists"]["fedcloud"]
    fedcloud.update(url=world.server.url(LIST_PATH), token_file=str(etc / "token"))
    target = data["targets"]["mycloud"]
    target.update(auth=cloud.password_auth(password_file=etc / "os-password"), region=cloud.region,
                  projects_file=str(etc / "mapping.json"), tag=f"imagesync-readme-{uuid.uuid4().hex[:8]}")
    # What a real site has at /var/lib, /var/cache and /etc/grid-security, here in the sandbox.
    data.update(state_dir=str(root / "state"), cache_dir=str(root / "cache"),
                trust={"ca_dir": str(world.ca_dir), "crl": "require"},
                download={"allowed_networks": ["127.0.0.0/8"], "min_free_space": "1MiB", "retries": 1})
    path = etc / "imagesync.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_readme_commands_run_against_the_readme_site(site: tuple[Path, dict[str, str], DemoWorld]) -> None:
    root, env, world = site
    places = {"/etc/grid-security/certificates": str(world.ca_dir), "/var/lib/imagesync": str(root / "state")}
    failed = []
    for command in (c for c in readme_commands() if c.startswith("imagesync ")):
        line = command
        for real, sandbox in places.items():
            line = line.replace(real, sandbox)
        bin_dir = Path(sys.executable).parent
        done = subprocess.run(["sh", "-c", line], cwd=root, env={**env, "PATH": f"{bin_dir}:{env['PATH']}"},
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            failed.append(f"{command}: exit {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
    assert failed == []
