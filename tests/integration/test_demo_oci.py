"""``imagesync demo --oci`` as an operator runs it (a real subprocess): Debian's docker-registry on 127.0.0.1, the
three-step story, and no registry process left behind, also after Ctrl-C; without docker-registry, one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagesync", *args, "demo", "--oci"], capture_output=True, text=True,
                          timeout=180, check=False, env=env)


def processes_naming(path: str) -> list[str]:
    """Command lines of live processes that mention ``path`` (the registry's config lives in the demo's directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if path in text:
            found.append(text)
    return found


def workdir(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("imagesync demo --oci, all on 127.0.0.1, in /"), first
    return first.rsplit(" in ", 1)[1]


def test_demo_oci_tells_the_three_steps_and_leaves_no_registry_running() -> None:
    result = demo()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""  # the story only
    out = result.stdout
    steps = [out.index(f"\n{n}. ") for n in (1, 2, 3)]
    first, second, third = out[steps[0]:steps[1]], out[steps[1]:steps[2]], out[steps[2]:]
    assert "(Debian's docker-registry; TLS from an ephemeral CA, no auth)" in out
    assert first.count("(new image) -> done") == 2 and "demo/alpine:3 sha256:" in first
    assert "exit code 0: success" in first
    assert "registry demo: unchanged, 2 images" in second and "0.0 MiB downloaded" in second
    assert "2 keep, 0 failed" in second and "exit code 0: success" in second
    assert "update          archive: demo/127.0.0.1:" in third and "demo/alpine:3 sha256:" in third
    assert "1 update" in third and "(retired)" in third and third.count("(active)") == 2
    assert "demo/debian:13: no cosign signature for sha256:" in third
    assert "demo/debian:13" not in third[third.index("target now holds:"):]  # refused, never uploaded
    assert "exit code 1: some lists, images or actions failed; the rest was done" in third
    assert "The demo went as it should." in out and "Next steps:" in out
    assert processes_naming(workdir(out)) == []
    assert not Path(workdir(out)).exists()


def test_ctrl_c_stops_the_registry() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "imagesync", "demo", "--oci"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # until the first step has synced: the registry is up and serving
        seen.append(line)
        if line.startswith("target now holds:"):
            break
    tmp = workdir("".join(seen))
    assert any("docker-registry serve" in p for p in processes_naming(tmp))  # a check that can fail
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "aborted" in err, out + err
    assert processes_naming(tmp) == []
    assert not Path(tmp).exists()


def test_without_docker_registry_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(tmp_path)}
    result = demo(env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "imagesync: error: docker-registry not found on PATH: apt-get install docker-registry (Debian's package, "
        "the OCI distribution registry)"]


def test_demo_oci_refuses_glance() -> None:
    result = subprocess.run([sys.executable, "-m", "imagesync", "demo", "--oci", "--glance"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2 and "--glance is for the list demo" in result.stderr
