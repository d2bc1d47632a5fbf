"""Timing, memory and progress helpers shared by the stages."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType


def _vm(field: str) -> float:
    """A VmHWM/VmRSS line of /proc/self/status, in MB (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakMemory:
    """Peak resident memory of this process over a block: the kernel's
    high-water mark, reset at the start (Linux: clear_refs 5)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.peak_mb = max(_vm("VmHWM"), _vm("VmRSS"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def step(what: str) -> Iterator[None]:
    """A one-line progress note for a long step that has no natural counter."""
    t0 = time.monotonic()
    print(f"  {what} ...", file=sys.stderr, flush=True)
    yield
    print(f"  {what}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
