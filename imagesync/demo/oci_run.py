"""``imagesync demo --oci``: the list demo's three-step story, told from a local OCI registry.

Debian's docker-registry runs on 127.0.0.1 (TLS from a throwaway CA, storage in the demo's temporary directory);
two signed disk-image artifacts are synced into a directory: added; a no-op rerun that downloads no blob; then a
re-pushed floating tag becomes a new version (the old one retires) while an unsigned artifact is refused. The
registry is stopped at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from imagesync.config import settings as config
from imagesync.demo.oci_world import REGISTRY_NAME, OciWorld, build
from imagesync.demo.story import Echo, next_steps, story_only, sync_round
from imagesync.demo.world import as_qcow2, demo_images
from imagesync.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ImagesyncError

ALPINE, DEBIAN = "demo/alpine", "demo/debian"
# What each step should end with: the third refuses the unsigned artifact, so "some failed, the rest was done".
EXPECTED = (EXIT_OK, EXIT_OK, EXIT_PARTIAL)


class DemoUsageError(ImagesyncError):
    """The demo was asked for something it does not do (exit 2)."""

    exit_code = EXIT_USAGE


def run_oci_demo(*, echo: Echo, glance: bool = False) -> int:
    """Run the OCI demo in a temporary directory; return the exit code (0 when every step went as it should).

    Raises DemoUsageError with ``glance`` (not supported yet), RegistryUnavailable without docker-registry,
    ConversionError without qemu-img, PushError when the local registry refuses a push.
    """
    if glance:
        raise DemoUsageError("demo --oci syncs into a directory only; --glance is for the list demo",
                             hint="run imagesync demo --glance, or imagesync demo --oci")
    with tempfile.TemporaryDirectory(prefix="imagesync-demo-oci-") as tmp, story_only(), build(Path(tmp)) as world:
        settings = _publish_first(world, Path(tmp))
        echo(f"imagesync demo --oci, all on 127.0.0.1, in {tmp}")
        echo(f"  registry     {world.registry.url} (Debian's docker-registry; TLS from an ephemeral CA, no auth)")
        echo(f"  artifacts    {ALPINE}:3 and {DEBIAN}:12, single-layer disk images with EGI-style annotations,")
        echo("               signed in cosign's format; imagesync verifies them with the public key cosign.pub")
        echo(f"  target       archive: directory {Path(tmp) / 'archive'} (accepts qcow2, raw)")
        codes = _rounds(echo, settings, world)
        good = codes == EXPECTED
        echo("\nThe demo went as it should." if good else "\nThe demo did NOT go as it should: see above.")
        next_steps(echo)
        echo('  3. to follow a registry, add it under registries: (README section "OCI registries")')
        return EXIT_OK if good else EXIT_PARTIAL


def _publish_first(world: OciWorld, root: Path) -> config.Settings:
    alpine, debian = demo_images("1.0")
    world.push(ALPINE, "3", as_qcow2(alpine, root))
    world.push(DEBIAN, "12", debian)
    path = world.write_config([ALPINE, DEBIAN], {"driver": "directory", "path": str(root / "archive")})
    return config.load(path)


def _rounds(echo: Echo, settings: config.Settings, world: OciWorld) -> tuple[int, int, int]:
    first = sync_round(echo, f"1. first sync: both artifacts are new; their cosign signatures are checked before "
                       f"anything is downloaded (source {REGISTRY_NAME})", settings)
    second = sync_round(echo, "2. the same sync again: nothing changed, so only tag lists and manifests are asked "
                        "for and no blob is downloaded", settings)
    if second.bytes_downloaded:
        echo(f"(unexpected: {second.bytes_downloaded} bytes downloaded)")
    world.push(ALPINE, "3", as_qcow2(demo_images("2.0")[0], world.root))
    world.push(DEBIAN, "13", demo_images("13")[1], signed=False)
    third = sync_round(echo, f"3. the publisher re-pushes the floating tag {ALPINE}:3 (a new build: a new manifest "
                       f"digest, so a new version; the old one retires after the new one is in), and someone pushes "
                       f"{DEBIAN}:13 without a signature (refused, never downloaded)", settings)
    return first.exit_code, second.exit_code if not second.bytes_downloaded else EXIT_PARTIAL, third.exit_code
