"""Push one big raw image into Glance: imagesync's GlanceDriver.add vs `glance image-create --file FILE`.

Both sides upload the same file to the same Glance as the same user, each in a fresh child process timed from
spawn to exit (interpreter start, imports and Keystone authentication count on both sides). imagesync's side is
create + upload + the os_hash_value check (visibility private); the CLI's is create + upload. Runs alternate, the
image is deleted after each, and the medians give ``ratio = imagesync / glance-cli`` (target <= 1.1).

The cloud is the one the OS_* environment describes when OS_AUTH_URL is set; otherwise a dev cloud
(tests/devcloud/devcloud.py) is started in a temporary directory and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from uuid import uuid4

from cloudenv import dev_cloud  # bench/ is on sys.path when a benchmark runs
from common import make_image, parse_size
from glanceclient import client  # type: ignore[import-untyped,unused-ignore]
from keystoneauth1 import session
from keystoneauth1.identity import v3

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Image
from imagesync.targets.base import Upload
from imagesync.targets.glance import checks as glance_checks
from imagesync.targets.glance import driver as glance_driver

MiB = 1024 * 1024
BLOCK = 16 * MiB
RATIO_TARGET = 1.1
REPO = Path(__file__).resolve().parent.parent
DEVCLOUD = REPO / "tests" / "devcloud" / "devcloud.py"


@contextmanager
def cloud_env(root: Path) -> Iterator[dict[str, str]]:
    """The OS_* of the cloud to use: the caller's, or those of a dev cloud started for the benchmark."""
    if os.environ.get("OS_AUTH_URL"):
        yield {k: v for k, v in os.environ.items() if k.startswith("OS_")}
        return
    with dev_cloud(root) as cloud:
        yield cloud.env()


def child_env(cloud: Mapping[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return {**keep, **cloud}


def timed(argv: list[str], cloud: Mapping[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds (user + system), stdout) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True, env=child_env(cloud))
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, done.stdout


def run_imagesync(cloud: Mapping[str, str], image: Path, sha512: str,
                  read_size: int | None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, new image id) of a child doing GlanceDriver.add."""
    seconds, cpu, out = timed([sys.executable, __file__, "--child", str(image), sha512, str(read_size or 0)], cloud)
    return seconds, cpu, str(json.loads(out)["id"])


def run_cli(cloud: Mapping[str, str], glance: Path, image: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, new image id) of `glance image-create --file`."""
    seconds, cpu, out = timed([str(glance), "--os-image-api-version", "2", "image-create", "--disk-format", "raw",
                               "--container-format", "bare", "--file", str(image),
                               "--name", f"bench-cli-{uuid4().hex[:8]}"], cloud)
    return seconds, cpu, _table_value(out, "id")


def _table_value(table: str, key: str) -> str:
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == key:
            return cells[1]
    raise RuntimeError(f"no {key} in the glance CLI's output:\n{table}")


def child(image: str, sha512: str, read_size: str) -> int:
    """Runs in the child process: one GlanceDriver.add of ``image``, credentials from OS_*."""
    if int(read_size):
        glance_checks._READ_SIZE = int(read_size)  # what-if runs only (--read-size)
    path = Path(image)
    size = path.stat().st_size
    settings = TargetSettings(name="bench", driver="glance", tag=f"imagesync-bench-{uuid4().hex[:8]}",
                              visibility="private")
    driver = glance_driver.GlanceDriver(settings)
    start = time.perf_counter()
    image_id = driver.add(Upload(desired=_desired(sha512, size), path=path, disk_format="raw", virtual_size=size,
                                 size=size, sha512=sha512))
    print(json.dumps({"id": image_id, "add_seconds": time.perf_counter() - start}))
    driver.close()
    return 0


def _desired(sha512: str, size: int) -> DesiredImage:
    image = Image(identifier=uuid4().hex, uri="https://bench.example.org/image.img", sha512=sha512, size=size,
                  version="1", title="bench", description=None, arch="x86_64", os_name=None, os_version=None,
                  format="raw", vo=None, ram_minimum=None, core_minimum=None, mpuri=None, expires=None,
                  attributes=MappingProxyType({"dc:title": "bench"}))
    return DesiredImage(list_name="bench", list_identifier="bench", image=image)


def delete(cloud: Mapping[str, str], image_id: str) -> None:
    auth = v3.Password(auth_url=cloud["OS_AUTH_URL"], username=cloud["OS_USERNAME"], password=cloud["OS_PASSWORD"],
                       project_name=cloud["OS_PROJECT_NAME"], user_domain_name=cloud["OS_USER_DOMAIN_NAME"],
                       project_domain_name=cloud["OS_PROJECT_DOMAIN_NAME"])
    glance = client.Client("2", session=session.Session(auth=auth, timeout=60),
                           region_name=cloud.get("OS_REGION_NAME"), interface=cloud.get("OS_INTERFACE", "public"))
    glance.images.delete(image_id)


def measure(args: argparse.Namespace, root: Path) -> tuple[float, float]:
    image = root / "image.raw"
    t0 = time.perf_counter()
    sha512 = make_image(image, args.size, block_size=BLOCK)
    print(f"image: {args.size / MiB:.0f} MiB written in {time.perf_counter() - t0:.1f}s under {root}")
    times: dict[str, list[float]] = {"imagesync": [], "glance-cli": []}
    cpus: dict[str, list[float]] = {"imagesync": [], "glance-cli": []}
    with cloud_env(root) as cloud:
        for run in range(args.repeat):
            for name in ("imagesync", "glance-cli") if run % 2 == 0 else ("glance-cli", "imagesync"):  # alternate
                if name == "imagesync":
                    seconds, cpu, image_id = run_imagesync(cloud, image, sha512, args.read_size)
                else:
                    seconds, cpu, image_id = run_cli(cloud, args.glance_cli, image)
                delete(cloud, image_id)
                times[name].append(seconds)
                cpus[name].append(cpu)
            print(f"run {run + 1}: " + "  ".join(f"{n} {times[n][-1]:.2f}s (client CPU {cpus[n][-1]:.2f}s)"
                                                  for n in times))
    for name in times:
        print(f"median client CPU {name} {statistics.median(cpus[name]):.2f}s")
    return statistics.median(times["imagesync"]), statistics.median(times["glance-cli"])


def main() -> int:
    home = Path(os.environ.get("IMAGESYNC_DEVCLOUD_HOME") or REPO / ".devcloud")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=1024 * MiB, help="image size, e.g. 1G, 256M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--glance-cli", type=Path, default=home / "venv" / "bin" / "glance")
    parser.add_argument("--read-size", type=parse_size, default=None,
                        help="what-if: override the driver's read size (default: the driver's own)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary image goes")
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:5])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagesync-bench-", dir=args.dir) as tmp:
        ours, cli = measure(args, Path(tmp))
    ratio = ours / cli
    met = ratio <= RATIO_TARGET
    print(f"median imagesync {ours:.2f}s ({args.size / MiB / ours:.0f} MiB/s), "
          f"median glance-cli {cli:.2f}s ({args.size / MiB / cli:.0f} MiB/s)")
    print(f"ratio = imagesync / glance-cli = {ratio:.2f} (target <= {RATIO_TARGET})")
    print(f"result: ratio {ratio:.2f}: {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
