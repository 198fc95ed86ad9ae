"""The matching rules of ``imagesync adopt`` (imagesync.run.adopt_match) and the adoption view of a Glance image
(imagesync.targets.glance.foreign), as tables."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from imagesync.model import DesiredImage, Image
from imagesync.run.adopt_match import by_identifier, match
from imagesync.targets.glance.foreign import Foreign, foreign, is_foreign

HOST = "registry.example.org"
REF = f"{HOST}/egi_vm_images/ubuntu:24.04"
DIGEST = "sha256:" + "d" * 64
OLD_DIGEST = "sha256:" + "0" * 64
LAYER = "a" * 64
SHA512 = "5" * 128
OTHER512 = "6" * 128


def image(identifier: str, version: str, *, sha512: str = "", sha256: str = "") -> Image:
    return Image(identifier=identifier, uri="https://example.org/x", sha512=sha512, size=1, version=version,
                 title=None, description=None, arch=None, os_name=None, os_version=None, format="raw", vo=None,
                 ram_minimum=None, core_minimum=None, mpuri=None, expires=None, attributes={}, sha256=sha256)


def desired(identifier: str, version: str, *, source: str = "list", **digests: str) -> DesiredImage:
    return DesiredImage(list_name=source, list_identifier=source, image=image(identifier, version, **digests))


REGISTRY = desired(REF, DIGEST, source="reg", sha256=LAYER)
REGISTRY_SEEN = desired(REF, DIGEST, source="reg", sha256=LAYER, sha512=SHA512)
LISTED = desired("demo-alpine", "1.0", sha512=SHA512)
EGI_ID = f"{REF}-{DIGEST}"

CASES = [
    # (foreign image, what the sources offer, expected source, expected sha512, reason contains)
    pytest.param(Foreign("g1", EGI_ID, None, SHA512, f"sha256:{LAYER}"), [REGISTRY], "reg", SHA512,
                 "still serves", id="EGI registry image: same digest and layer, Glance's sha512 recorded"),
    pytest.param(Foreign("g1", EGI_ID, None, SHA512, f"sha256:{LAYER}"), [REGISTRY_SEEN], "reg", SHA512,
                 "still serves", id="EGI registry image whose sha512 imagesync saw before"),
    pytest.param(Foreign("g1", EGI_ID, None, OTHER512, f"sha256:{LAYER}"), [REGISTRY_SEEN], None, None,
                 "Glance's sha512 differs", id="EGI registry image whose Glance bytes differ from those seen"),
    pytest.param(Foreign("g1", f"{REF}-{OLD_DIGEST}", None, SHA512, f"sha256:{LAYER}"), [REGISTRY], None, None,
                 "the registry serves sha256:dddddddddddd under this tag now, not sha256:000000000000",
                 id="EGI registry image of a digest the tag no longer points at"),
    pytest.param(Foreign("g1", EGI_ID, None, SHA512, "sha256:" + "b" * 64), [REGISTRY], None, None,
                 "is not the layer digest", id="EGI registry image with another layer"),
    pytest.param(Foreign("g1", EGI_ID, None, SHA512, None), [REGISTRY], None, None,
                 "image_hash None", id="EGI registry image without image_hash"),
    pytest.param(Foreign("g1", EGI_ID, None, SHA512, f"sha512:{SHA512}"), [REGISTRY], None, None,
                 "is not the layer digest", id="registry image with a sha512 image_hash"),
    pytest.param(Foreign("g1", f"{HOST}/egi_vm_images/alma:9-{DIGEST}", None, SHA512, f"sha256:{LAYER}"),
                 [REGISTRY], None, None, "no listed image", id="EGI registry image of a repository not followed"),
    pytest.param(Foreign("g1", "demo-alpine", None, SHA512, None), [LISTED], "list", SHA512,
                 "identifier and sha512 match", id="list image, Glance's sha512"),
    pytest.param(Foreign("g1", "demo-alpine", None, None, f"sha512:{SHA512}"), [LISTED], "list", SHA512,
                 "identifier and sha512 match", id="list image, EGI fork's image_hash sha512: (no Glance hash)"),
    pytest.param(Foreign("g1", "demo-alpine", None, OTHER512, f"sha512:{SHA512}"), [LISTED], None, None,
                 "another sha512", id="list image: Glance's own hash beats the claimed one"),
    pytest.param(Foreign("g1", "demo-alpine", "1.0", SHA512), [LISTED], "list", SHA512,
                 "identifier and sha512 match", id="cloudkeeper-os image, same version"),
    pytest.param(Foreign("g1", "demo-alpine", "0.9", SHA512), [LISTED], None, None,
                 "listed (version 1.0) with another sha512 or version", id="cloudkeeper-os image, older version"),
    pytest.param(Foreign("g1", None, None, SHA512), [LISTED], None, None, "no listed image",
                 id="no identifier"),
    pytest.param(Foreign("g1", "demo-alpine", None, None, None), [LISTED], None, None, "another sha512",
                 id="list image without any hash"),
]


@pytest.mark.parametrize(("found", "offered", "source", "sha512", "reason"), CASES)
def test_match(found: Foreign, offered: list[DesiredImage], source: str | None, sha512: str | None,
               reason: str) -> None:
    result = match(found, by_identifier(offered))
    assert reason in result.reason
    if source is None:
        assert result.desired is None and result.reason.endswith(": left alone")
    else:
        assert result.desired is not None
        assert (result.desired.list_name, result.desired.image.sha512) == (source, sha512)


def test_a_registry_image_offered_by_several_sources_matches_the_one_serving_the_digest() -> None:
    moved = desired(REF, OLD_DIGEST, source="reg@vo1", sha256=LAYER)
    result = match(Foreign("g1", EGI_ID, None, SHA512, f"sha256:{LAYER}"), by_identifier([moved, REGISTRY]))
    assert result.desired is not None and result.desired.list_name == "reg"


GLANCE = [
    # (Glance image, source, adoption view, one of the source's and not imagesync's)
    pytest.param({"id": "g", "tags": ["atrope-catchall"], "appdb_id": EGI_ID, "image_hash": f"SHA256:{LAYER}",
                  "os_hash_algo": "sha512", "os_hash_value": SHA512}, "atrope",
                 Foreign("g", EGI_ID, None, SHA512, f"sha256:{LAYER}"), True, id="EGI fork, registry image"),
    pytest.param({"id": "g", "tags": ["atrope"], "appdb_id": "x", "sha512": SHA512, "os_hash_algo": "md5",
                  "os_hash_value": "m"}, "atrope", Foreign("g", "x", None, None, f"sha512:{SHA512}"), True,
                 id="atrope 2, sha512 property, Glance hashing with md5"),
    pytest.param({"id": "g", "tags": ["atrope", "mine"], "appdb_id": "x"}, "atrope",
                 Foreign("g", "x", None, None, None), False, id="already ours"),
    pytest.param({"id": "g", "APPLIANCE_ID": "x", "APPLIANCE_VERSION": "1", "os_hash_algo": "sha512",
                  "os_hash_value": SHA512, "image_hash": "sha512:0"}, "cloudkeeper-os",
                 Foreign("g", "x", "1", SHA512), True, id="cloudkeeper-os"),
    pytest.param({"id": "g", "tags": []}, "cloudkeeper-os", Foreign("g", None, None, None), False,
                 id="no APPLIANCE_ID: not cloudkeeper-os's"),
]


@pytest.mark.parametrize(("held", "source", "view", "theirs"), GLANCE)
def test_foreign_view(held: dict[str, Any], source: str, view: Foreign, theirs: bool) -> None:
    assert foreign(held, source) == view
    assert is_foreign(held, source, "mine") is theirs


@pytest.mark.parametrize(("vos", "expected"), [((), "list-a"), (("a.vo",), "list-a"), (("b.vo",), "list-b")])
def test_the_same_image_listed_for_two_vos_goes_to_the_vo_whose_project_holds_it(vos: tuple[str, ...],
                                                                                 expected: str) -> None:
    """Before: the first listing won, so a copy in VO b's project was recorded as VO a's (and replaced later)."""
    both = [replace(desired("demo-alpine", "1.0", source=f"list-{vo[0]}", sha512=SHA512), vo=vo)
            for vo in ("a.vo", "b.vo")]
    found = match(Foreign("g1", "demo-alpine", "1.0", SHA512, vos=vos), by_identifier(both))
    assert found.desired is not None and found.desired.list_name == expected
