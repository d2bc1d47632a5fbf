"""sightd's tokenizer (the Go `sightd tokenize`) against open_clip's on more
than 1,000 strings: words, unicode, emoji, punctuation, whitespace, HTML
entities, and texts longer than the context (cut at 77, end token kept)."""

from __future__ import annotations

import random
from pathlib import Path

import open_clip
from conftest import MEASURED, REPO

from sightd_export import verify

WORDS = (
    "a photo of the cat dog person car package porch garage door open closed night day red blue green "
    "delivery truck bicycle someone walking running standing sitting garden street window kitchen "
    "café naïve façade résumé über straße smørrebrød добрый день 東京 日本語 中文 한국어 العربية ελληνικά "
    "don't it's we're O'Neil e-mail co-op 3pm 12:30 #1 $5 50% C++ x86_64 U.S.A. Mr. Dr."
).split()
EXTRAS = [
    "🐶",
    "🚗",
    "📦",
    "👩‍👩‍👧",
    "🇩🇪",
    "❤️",
    "™",
    "©",
    "…",
    "—",
    "–",
    "«",
    "»",
    "&amp;",
    "&lt;b&gt;",
    "&#39;",
    "&quot;",
]
PUNCT = list("!?.,;:()[]{}\"'`~@#$%^&*-_=+/\\|<>")
SPACES = [" ", "  ", "\t", "\n", " \u00a0", "\u3000", "\r\n"]


def strings(n: int = 1200) -> list[str]:
    rng = random.Random(19)
    out = ["", " ", "a", "A PHOTO OF A CAT", "hello world", "a" * 300, "🐶" * 100]
    while len(out) < n:
        k = rng.choice([1, 2, 3, 5, 8, 13, 40, 90])
        parts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.7:
                w = rng.choice(WORDS)
                parts.append(w.upper() if rng.random() < 0.1 else w.capitalize() if rng.random() < 0.1 else w)
            elif r < 0.8:
                parts.append(rng.choice(EXTRAS))
            elif r < 0.9:
                parts.append(rng.choice(PUNCT) * rng.choice([1, 1, 2, 3]))
            else:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
            parts.append(rng.choice(SPACES) if rng.random() < 0.2 else " ")
        s = "".join(parts)
        if rng.random() < 0.1:
            s = rng.choice(SPACES) + s + rng.choice(SPACES)
        out.append(s)
    return out


def vocab() -> Path:
    # The real CLIP merge list, read where the project keeps it (never copied
    # into the repository); open_clip ships the same file.
    shared = REPO.parent / "shared" / "testdata" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    return shared if shared.is_file() else Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def test_tokenizer_parity(sightd):
    texts = strings()
    assert len(texts) >= 1000
    tok = open_clip.get_tokenizer("ViT-B-32")
    got = verify.sightd_tokenize(sightd, vocab(), texts)
    want = [[int(i) for i in row if i != 0] for row in tok(texts)]
    diffs = [(t, g, w) for t, g, w in zip(texts, got, want, strict=True) if g != w]
    long = [w for w in want if len(w) == 77]
    MEASURED.append(f"tokenizer: {len(texts)} strings, {len(diffs)} differ from open_clip, {len(long)} cut at 77")
    assert long and all(w[-1] == 49407 for w in long), "over-long texts keep the end token"
    assert not diffs, f"{len(diffs)} differ, first: {diffs[:3]}"
