"""Write tiny SoundFont 2 files for tests (our own minimal RIFF writer).

:func:`write_sf2` takes presets, each one instrument of zones; a zone names its sample
(float mono in [-1, 1], written as 16-bit), sample rate, root key and any SoundFont
generators ``{operator number: amount}`` (key/velocity ranges are given as ``(lo, hi)``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

KEY_RANGE, VEL_RANGE, SAMPLE_ID, SAMPLE_MODES = 43, 44, 53, 54


@dataclass
class TZone:
    """One instrument zone of a test soundfont."""

    sample: np.ndarray
    rate: int = 44100
    root: int = 60
    keys: tuple[int, int] = (0, 127)
    vels: tuple[int, int] = (0, 127)
    gens: dict[int, int] = field(default_factory=dict)
    loop: tuple[int, int] | None = None  # loop start/end in samples (sets sampleModes 1)


@dataclass
class TPreset:
    """A preset (bank, program) playing one instrument of ``zones``."""

    name: str
    bank: int
    program: int
    zones: list[TZone]
    gens: dict[int, int] = field(default_factory=dict)  # preset-level generators


def _chunk(tag: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return tag + struct.pack("<I", len(data)) + data + pad


def _list(kind: bytes, chunks: list[bytes]) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _name(text: str) -> bytes:
    return text.encode()[:19].ljust(20, b"\0")


def _gen(oper: int, amount) -> bytes:
    if isinstance(amount, tuple):
        return struct.pack("<HBB", oper, amount[0], amount[1])
    return struct.pack("<Hh", oper, int(amount))


def _zone_gens(z: TZone, sample_index: int) -> list[bytes]:
    gens = [_gen(KEY_RANGE, z.keys), _gen(VEL_RANGE, z.vels)]
    gens += [_gen(o, a) for o, a in sorted(z.gens.items())]
    if z.loop is not None:
        gens.append(_gen(SAMPLE_MODES, 1))
    return gens + [_gen(SAMPLE_ID, sample_index)]  # sampleID comes last


def write_sf2(path, presets: list[TPreset]) -> None:
    """Write ``presets`` to a SoundFont 2 file at ``path``."""
    pool: list[np.ndarray] = []
    shdr, inst, ibag, igen = [], [], [], []
    phdr, pbag, pgen = [], [], []
    offset = 0
    for p_index, preset in enumerate(presets):
        inst.append(_name(f"inst{p_index}") + struct.pack("<H", len(ibag)))
        for z in preset.zones:
            pcm = np.round(np.clip(z.sample, -1, 1) * 32767).astype("<i2")
            loop = z.loop or (0, len(pcm) - 1)
            shdr.append(
                _name(f"s{len(shdr)}")
                + struct.pack(
                    "<IIII", offset, offset + len(pcm), offset + loop[0], offset + loop[1]
                )
                + struct.pack("<IBbHH", z.rate, z.root, 0, 0, 1)
            )
            pool += [pcm, np.zeros(46, dtype="<i2")]
            offset += len(pcm) + 46
            ibag.append(struct.pack("<HH", len(igen), 0))
            igen += _zone_gens(z, len(shdr) - 1)
        phdr.append(
            _name(preset.name)
            + struct.pack("<HHHIII", preset.program, preset.bank, len(pbag), 0, 0, 0)
        )
        pbag.append(struct.pack("<HH", len(pgen), 0))
        pgen += [_gen(o, a) for o, a in sorted(preset.gens.items())] + [_gen(41, p_index)]
    phdr.append(_name("EOP") + struct.pack("<HHHIII", 0, 0, len(pbag), 0, 0, 0))
    pbag.append(struct.pack("<HH", len(pgen), 0))
    pgen.append(struct.pack("<HH", 0, 0))
    inst.append(_name("EOI") + struct.pack("<H", len(ibag)))
    ibag.append(struct.pack("<HH", len(igen), 0))
    igen.append(struct.pack("<HH", 0, 0))
    shdr.append(_name("EOS") + bytes(26))
    info = _list(
        b"INFO",
        [
            _chunk(b"ifil", struct.pack("<HH", 2, 1)),
            _chunk(b"isng", b"EMU8000\0"),
            _chunk(b"INAM", b"test\0\0"),
        ],
    )
    sdta = _list(b"sdta", [_chunk(b"smpl", np.concatenate(pool).tobytes())])
    pdta = _list(
        b"pdta",
        [
            _chunk(b"phdr", b"".join(phdr)),
            _chunk(b"pbag", b"".join(pbag)),
            _chunk(b"pmod", bytes(10)),
            _chunk(b"pgen", b"".join(pgen)),
            _chunk(b"inst", b"".join(inst)),
            _chunk(b"ibag", b"".join(ibag)),
            _chunk(b"imod", bytes(10)),
            _chunk(b"igen", b"".join(igen)),
            _chunk(b"shdr", b"".join(shdr)),
        ],
    )
    body = b"sfbk" + info + sdta + pdta
    with open(path, "wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", len(body)) + body)
