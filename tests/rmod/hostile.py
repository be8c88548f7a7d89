"""Helpers for the hostile-input tests: a memory- and time-capped Python child, and raw MIDI
files written byte by byte (so a test can say exactly what a crafted file holds)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_capped(
    code: str, timeout: float = 60, mem_bytes: int = 1536 << 20, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a child limited to ``mem_bytes`` of address space and
    ``timeout`` seconds (``subprocess.TimeoutExpired`` past it, the child killed)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    base = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**base, **(env or {})},
    )


def cli_code(module: str, argv: list[str]) -> str:
    """Python code that runs ``rmod.cli.<module>.main(argv)`` and exits with its status."""
    return f"import sys\nfrom rmod.cli.{module} import main\nsys.exit(main({argv!r}))"


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_file(events: list[bytes], ticks_per_beat: int = 480) -> bytes:
    """A format-0 MIDI file of one track holding ``events`` (delta time + message each)."""
    track = b"".join(events) + b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def tempo(us_per_beat: int) -> bytes:
    """A set-tempo meta event at delta 0."""
    return b"\x00\xff\x51\x03" + us_per_beat.to_bytes(3, "big")


def hits(delta: int) -> list[bytes]:
    """Kick, snare and closed hi-hat on MIDI channel 10 ``delta`` ticks after the previous
    event, each released a tick later."""
    on = [vlq(delta) + b"\x99\x24\x64", b"\x00\x99\x26\x64", b"\x00\x99\x2a\x64"]
    return on + [b"\x01\x89\x24\x00", b"\x00\x89\x26\x00", b"\x00\x89\x2a\x00"]
