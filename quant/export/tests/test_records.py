"""record.json's parser: the seed corpus in data/records, and a mutation
fuzz over it (fixed seed): every input gives rows or one ExportError, never
another exception, and no path leaves the record folder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sightd_export import records
from sightd_export.load import ExportError

CORPUS = Path(__file__).parent / "data" / "records"


def parse(data: bytes) -> list[tuple[float, int, str, str]] | str:
    try:
        return records.parse_record(data, "record.json")
    except ExportError as e:
        return str(e)


def test_seeds():
    assert parse((CORPUS / "good.json").read_bytes()) == [
        (0.0, 0, "regions/000000-00.png", "full"),
        (0.857, 12, "regions/000012-00.png", "full"),
        (0.857, 12, "regions/000012-01.png", "motion"),
    ]
    assert "inside the record folder" in str(parse((CORPUS / "escape.json").read_bytes()))
    assert "time_s" in str(parse((CORPUS / "bad-time.json").read_bytes()))
    assert "sightd-record/1" in str(parse((CORPUS / "other-format.json").read_bytes()))
    assert "not JSON" in str(parse((CORPUS / "truncated.json").read_bytes()))


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[i % len(b) : i % len(b) + rng.randint(1, 8)]
        elif op == 1:
            b[i:i] = rng.choice([b"..", b"/", b"null", b"1e999", b"-1", b"[", b"}", b'"', b"\xff", b"true"])
        elif op == 2 and b:
            b[i % len(b)] = rng.randrange(256)
        else:
            b = b[:i]
    return bytes(b)


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.glob("*.json")))
def test_fuzz(seed):
    rng = random.Random(seed)
    base = (CORPUS / seed).read_bytes()
    for _ in range(2000):
        got = parse(mutate(rng, base))
        if isinstance(got, list):
            for _t, _i, rel, _k in got:
                assert not rel.startswith("/") and ".." not in Path(rel).parts, rel
