"""Fuzz the HEPiX list parser with mutated real-looking lists (byte level and JSON-structure aware).

Oracle: ``hepix.parse`` ends in an ImageList or a ListFormatError naming the source and a JSON path; what it
returns is safe for the stages after it (freshness checks, Glance properties, UTF-8 logs and state).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imagesync.errors import ImagesyncError, ListFormatError
from imagesync.model import DesiredImage, ImageList
from imagesync.sources.hepix import parse as hepix
from imagesync.targets import properties
from tests.fuzz import campaign
from tests.fuzz.documents import json_mutation
from tests.fuzz.mutators import bytes_mutation
from tests.support.samples import hepix_image, hepix_list

CASES = 8000
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DN, CA = "/DC=EU/DC=EGI/C=NL/O=Hosts/O=EGI.eu/CN=appdb.egi.eu", "/DC=ORG/DC=SEE-GRID/CN=SEE-GRID CA 2013"


def _corpus() -> tuple[bytes, ...]:
    created, expires = NOW - timedelta(hours=1), datetime(2499, 12, 31, 22, tzinfo=UTC)
    many = [hepix_image(f"00000000-0000-4000-8000-{i:012d}", f"1.{i}", title=f"Image {i} \u00e9") for i in range(12)]
    with_ints = json.loads(hepix_list(identifier="ints", created=created, expires=expires, endorser_dn=DN,
                                      endorser_ca=CA))
    for entry in with_ints["hv:imagelist"]["hv:images"]:
        entry["hv:image"].update({"hv:size": 1024, "hv:ram_minimum": 2048, "dc:date:expires": "2030-01-01T00:00:00Z"})
    documents = [
        hepix_list(identifier="default", created=created, expires=expires, endorser_dn=DN, endorser_ca=CA),
        hepix_list(identifier="many", created=created, expires=expires, endorser_dn=DN, endorser_ca=CA, images=many),
        hepix_list(identifier="empty", created=created, expires=expires, endorser_dn=DN, endorser_ca=CA, images=[]),
        json.dumps(with_ints).encode(),
    ]
    # Transports and editors: a BOM, CRLF line ends, openssl's -text header left on.
    documents.append(b"\xef\xbb\xbf" + documents[0].replace(b"\n", b"\r\n"))
    return tuple(documents)


CORPUS = _corpus()


def mutate(rng: random.Random) -> tuple[bytes, str]:
    content = rng.choice(CORPUS)
    if rng.random() < 0.6:
        try:
            return json_mutation(rng, content)
        except ValueError:
            pass  # not JSON any more (BOM/CRLF variant is): mutate bytes instead
    return bytes_mutation(rng, content, CORPUS)


def check(content: bytes) -> str:
    try:
        parsed = hepix.parse(content, source="fuzz")
    except ListFormatError as exc:
        assert exc.subject == "fuzz" and exc.message.startswith("$"), str(exc)
        assert "\n" not in str(exc), str(exc)
        return "ListFormatError"
    _downstream(parsed)
    return "parsed"


def _downstream(parsed: ImageList) -> None:
    try:
        hepix.check_freshness(parsed, now=NOW, previous_created=NOW - timedelta(days=1), source="fuzz")
    except ImagesyncError as exc:
        assert "\n" not in str(exc)
    texts = [parsed.identifier, parsed.title or "", parsed.endorser_dn, parsed.endorser_ca, parsed.vo or ""]
    for image in parsed.images:
        hepix.image_expired(image, NOW)
        desired = DesiredImage(list_name="fuzz", list_identifier=parsed.identifier, image=image,
                               vo=image.vo or parsed.vo)
        texts += properties.properties(desired, tag="imagesync", disk_format="qcow2", virtual_size=1).values()
        texts += [properties.image_name(desired), image.uri, image.format or ""]
    # Everything parsed ends up in log lines, the SQLite state and Glance: it must be valid Unicode.
    for text in texts:
        text.encode("utf-8")


def test_fuzz_hepix_parse(tmp_path: Path) -> None:
    outcomes = campaign.run("hepix", CASES, mutate, check, save=campaign.save_bytes, out_dir=tmp_path)
    if campaign.replaying():
        return
    assert outcomes["parsed"] > len(CORPUS)
    assert outcomes["ListFormatError"] > sum(outcomes.values()) // 4
