"""A real Keystone + Glance on 127.0.0.1 for the test suite: install | start | stop | status | env | freeze.

Run with the system python3 or the project venv's python; it uses the standard library only and installs the
OpenStack services into their own venv (`<home>/venv`, home = $IMAGESYNC_DEVCLOUD_HOME or `<repo>/.devcloud`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from string import Template
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run as a script: make the sibling modules importable as tests.devcloud.*
    sys.path.insert(0, str(REPO))

from tests.devcloud import identity, procs  # noqa: E402
from tests.devcloud.procs import DevcloudError, Service  # noqa: E402
from tests.devcloud.venvs import freeze, install, install_key, installed  # noqa: E402

MARKER = ".devcloud-run"  # only directories carrying it are ever wiped by start
STATE = ("keystone.db", "glance.db", "fernet-keys", "credential-keys")  # what a template holds


def default_home() -> Path:
    return Path(os.environ.get("IMAGESYNC_DEVCLOUD_HOME") or REPO / ".devcloud")


def template_key() -> str:
    """The install key plus everything that shapes the bootstrap, so any change of it rebuilds the template."""
    digest = hashlib.sha256(install_key().encode())
    for name in ("devcloud.py", "identity.py", "keystone.conf.in"):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def _service_env(venv: Path, run_dir: Path) -> dict[str, str]:
    # The services must not pick up a client's OS_* settings from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["OS_KEYSTONE_CONFIG_FILES"] = str(run_dir / "keystone.conf")
    env["OS_GLANCE_CONFIG_DIR"] = str(run_dir / "glance")
    return env


def _prepare_dir(run_dir: Path, keystone: Service, glance: Service) -> None:
    if any(procs.read_pid(run_dir, name) for name in ("keystone", "glance")):
        raise DevcloudError(f"a dev cloud is already running in {run_dir}; stop it first")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / MARKER).exists():
            raise DevcloudError(f"{run_dir} is not empty and is not a dev cloud directory; refusing to reuse it")
        shutil.rmtree(run_dir)
    for sub in ("glance", "logs", "images", "staging", "tasks", "locks", "image-cache"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER).touch()
    values = {
        "dir": str(run_dir),
        "keystone_port": str(keystone.port),
        "glance_port": str(glance.port),
        "glance_password": identity.GLANCE_PASSWORD,
    }
    for source, target in (("keystone.conf.in", "keystone.conf"), ("glance-api.conf.in", "glance/glance-api.conf")):
        (run_dir / target).write_text(Template((HERE / source).read_text()).substitute(values))
    shutil.copy(HERE / "glance-api-paste.ini", run_dir / "glance" / "glance-api-paste.ini")
    for shim in ("shim_keystone.py", "shim_glance.py"):
        shutil.copy(HERE / shim, run_dir / shim)


def _run_parallel(steps: dict[str, list[str]], run_dir: Path, env: dict[str, str]) -> None:
    """Run independent set-up commands at once (each is mostly Python start-up), one log each; raises DevcloudError."""
    running = {}
    for name, argv in steps.items():
        with procs.log_file(run_dir, name).open("wb") as out:
            running[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    failed = [name for name, proc in running.items() if proc.wait(timeout=300) != 0]
    if failed:
        raise DevcloudError(f"{', '.join(failed)} failed:\n" + "\n".join(procs.log_tail(run_dir, n) for n in failed))


def _cold(venv: Path, run_dir: Path, keystone: Service, glance: Service) -> dict[str, Any]:
    env = _service_env(venv, run_dir)
    bin_dir = venv / "bin"
    manage = [str(bin_dir / "keystone-manage"), "--config-file", str(run_dir / "keystone.conf")]
    owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    setup = {
        "glance-db-sync": [str(bin_dir / "glance-manage"), "--config-dir", str(run_dir / "glance"), "db_sync"],
        "keystone-db-sync": [*manage, "db_sync"],
        "keystone-fernet-setup": [*manage, "fernet_setup", *owner],
        "keystone-credential-setup": [*manage, "credential_setup", *owner],
    }
    _run_parallel(setup, run_dir, env)
    auth_url = keystone.url + "/v3"
    bootstrap = [*manage, "bootstrap", "--bootstrap-password", identity.ADMIN_PASSWORD,
                 "--bootstrap-region-id", identity.REGION, "--bootstrap-admin-url", auth_url,
                 "--bootstrap-internal-url", auth_url, "--bootstrap-public-url", auth_url]  # fmt: skip
    _run_parallel({"keystone-bootstrap": bootstrap}, run_dir, env)
    # Glance only asks Keystone at request time: it can load while Keystone is being populated.
    procs.spawn(venv, run_dir, keystone, env)
    procs.spawn(venv, run_dir, glance, env)
    procs.wait_healthy(run_dir, [keystone])
    accounts = identity.populate(auth_url, glance.url)
    procs.wait_healthy(run_dir, [glance])
    return accounts


def _save_template(run_dir: Path, template: Path, accounts: dict[str, Any]) -> None:
    # Built beside its final name and renamed, so a concurrent or interrupted start never sees half a template.
    partial = template.with_name(f"{template.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    for db in ("keystone.db", "glance.db"):  # the services are running: copy through SQLite's online backup
        with closing(sqlite3.connect(run_dir / db)) as src, closing(sqlite3.connect(partial / db)) as dst:
            src.backup(dst)
    for keys in ("fernet-keys", "credential-keys"):
        shutil.copytree(run_dir / keys, partial / keys)
    (partial / "accounts.json").write_text(json.dumps(accounts, indent=2))
    try:
        partial.rename(template)
    except OSError:
        shutil.rmtree(partial)  # another start won the race; its template is as good as ours
    for stale in template.parent.iterdir():  # templates of older pins or scripts are never used again
        if stale.name != template.name and ".partial-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)


def _execute(db_path: Path, sql: str, rows: list[tuple[str, ...]]) -> None:
    with closing(sqlite3.connect(db_path)) as db, db:
        db.executemany(sql, rows)


def _warm(venv: Path, run_dir: Path, template: Path, keystone: Service, glance: Service) -> dict[str, Any]:
    for item in STATE:
        src = template / item
        if src.is_dir():
            shutil.copytree(src, run_dir / item)
        else:
            shutil.copy(src, run_dir / item)
    _execute(
        run_dir / "keystone.db",
        "UPDATE endpoint SET url = ? WHERE service_id IN (SELECT id FROM service WHERE type = ?)",
        [(keystone.url + "/v3", "identity"), (glance.url, "image")],
    )
    # The template's Glance registered itself under its own port; this one registers anew when it loads.
    _execute(run_dir / "glance.db", "DELETE FROM node_reference", [()])
    env = _service_env(venv, run_dir)
    procs.spawn(venv, run_dir, keystone, env)
    procs.spawn(venv, run_dir, glance, env)
    procs.wait_healthy(run_dir, [keystone, glance])
    accounts: dict[str, Any] = json.loads((template / "accounts.json").read_text())
    return accounts


def start(home: Path, run_dir: Path) -> dict[str, Any]:
    """Start Keystone and Glance for run_dir, from the saved template when there is one; returns cloud.json's content.

    Raises DevcloudError when not installed, already running, or a service does not come up (with its log tail).
    """
    venv = home / "venv"
    if not installed(venv):
        raise DevcloudError(f"{venv} is missing or stale: run `devcloud.py install` first")
    started = time.monotonic()
    run_dir = run_dir.resolve()
    k_port, g_port = procs.free_ports(2)
    keystone, glance = Service("keystone", k_port, "/v3"), Service("glance", g_port, "/versions")
    _prepare_dir(run_dir, keystone, glance)
    template = home / "template" / template_key()
    try:
        if (template / "accounts.json").is_file():
            mode, accounts = "warm", _warm(venv, run_dir, template, keystone, glance)
        else:
            mode, accounts = "cold", _cold(venv, run_dir, keystone, glance)
            _save_template(run_dir, template, accounts)
    except BaseException:
        stop(run_dir)
        raise
    cloud = _describe(run_dir, keystone, glance, accounts, mode, time.monotonic() - started)
    _write_env_files(run_dir, cloud)
    return cloud


def _describe(
    run_dir: Path, keystone: Service, glance: Service, accounts: dict[str, Any], mode: str, seconds: float
) -> dict[str, Any]:
    services = {
        s.name: {
            "url": s.url,
            "port": s.port,
            "pid": procs.read_pid(run_dir, s.name),
            "log": str(procs.log_file(run_dir, s.name)),
        }
        for s in (keystone, glance)
    }
    return {
        "version": 1,
        "dir": str(run_dir),
        "auth_url": keystone.url + "/v3",
        "region": identity.REGION,
        "image_url": glance.url,
        **services,
        **accounts,
        "start": {"mode": mode, "seconds": round(seconds, 2)},
    }


def _openrc(auth_url: str, account: dict[str, str]) -> str:
    values = {
        "OS_AUTH_URL": auth_url,
        "OS_USERNAME": account["username"],
        "OS_PASSWORD": account["password"],
        "OS_PROJECT_NAME": account["project_name"],
        "OS_USER_DOMAIN_NAME": account["user_domain_name"],
        "OS_PROJECT_DOMAIN_NAME": account["project_domain_name"],
        "OS_REGION_NAME": identity.REGION,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_INTERFACE": "public",
    }
    lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    return "# Test-only credentials of a throwaway loopback cloud.\n" + "\n".join(lines) + "\n"


def _write_env_files(run_dir: Path, cloud: dict[str, Any]) -> None:
    for name, account in (("openrc", cloud["imagesync"]), ("admin-openrc", cloud["admin"])):
        (run_dir / name).write_text(_openrc(cloud["auth_url"], account))
    tmp = run_dir / "cloud.json.tmp"
    tmp.write_text(json.dumps(cloud, indent=2) + "\n")
    tmp.rename(run_dir / "cloud.json")  # readers never see a half-written description


def stop(run_dir: Path) -> list[str]:
    """Stop both services of run_dir by their recorded PIDs; returns the names that were running."""
    stopped = procs.stop(run_dir.resolve(), ["glance", "keystone"])
    (run_dir / "cloud.json").unlink(missing_ok=True)
    return stopped


def status(run_dir: Path) -> bool:
    """Print one line per service; True when both run and answer."""
    run_dir = run_dir.resolve()
    try:
        cloud = json.loads((run_dir / "cloud.json").read_text())
    except (OSError, ValueError):
        cloud = {}
    healthy = True
    for name, path in (("keystone", "/v3"), ("glance", "/versions")):
        pid = procs.read_pid(run_dir, name)
        url = cloud.get(name, {}).get("url", "")
        answers = bool(pid and url and procs.probe(url + path))
        healthy = healthy and answers
        print(f"{name}: {'running' if pid else 'stopped'} pid={pid or '-'} url={url or '-'} answers={answers}")
    return healthy


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 failed or not running)."""
    parser = argparse.ArgumentParser(prog="devcloud.py", description=__doc__)
    parser.add_argument("command", choices=["install", "start", "stop", "status", "env", "freeze"])
    parser.add_argument(
        "--home", type=Path, default=default_home(), help="venv and template cache (default %(default)s)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="run directory (default <home>/run)")
    parser.add_argument("--admin", action="store_true", help="env: print the admin credentials instead")
    args = parser.parse_args(argv)
    home: Path = args.home.resolve()
    run_dir: Path = args.dir or home / "run"
    try:
        return _dispatch(args.command, home, run_dir, args.admin)
    except DevcloudError as exc:
        print(f"devcloud: {exc}", file=sys.stderr)
        return 1


def _dispatch(command: str, home: Path, run_dir: Path, admin: bool) -> int:
    if command == "install":
        install(home)
    elif command == "freeze":
        freeze(home)
    elif command == "start":
        cloud = start(home, run_dir)
        print(f"devcloud: {cloud['start']['mode']} start in {cloud['start']['seconds']} s; see {run_dir}/cloud.json",
              file=sys.stderr)  # fmt: skip
        print(run_dir.resolve() / "cloud.json")
    elif command == "stop":
        print(f"devcloud: stopped {', '.join(stop(run_dir)) or 'nothing'}", file=sys.stderr)
    elif command == "status":
        return 0 if status(run_dir) else 1
    else:
        openrc = run_dir / ("admin-openrc" if admin else "openrc")
        if not openrc.is_file():
            raise DevcloudError(f"no {openrc}: start the dev cloud first")
        print(openrc.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
