"""The report writers: Table I as Markdown and CSV, the figure, and the static ``index.html``.

:func:`build_report_inputs` (also used by the headless browser test) makes a hand-built
TableResult (2 datasets, one named with markup, 4 systems, 3 metrics, 3 drums, a few missing
cells, paper values) and example clips backed by real WAVs of different lengths and rates.
"""

from __future__ import annotations

import csv
import io
import math
import struct
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

from dose_model.evaluate.report import mel_db, write_report
from dose_model.evaluate.results import METRICS, Cell, ExampleClip, TableResult
from dose_model.evaluate.tables import (
    ReportError,
    best_systems,
    plot_table,
    write_table_csv,
    write_table_markdown,
)

NASTY = '<script>alert("x")</script> & $drums'  # a dataset name from the command line
DATASETS = ("RMOD", NASTY)
SYSTEMS = ("Reconstruction", "LarsNet", "DOSE (w/o onset loss)", "DOSE")
DRUMS = ("kick", "snare", "hihat")
MISSING_KEYS = {
    ("RMOD", "DOSE (w/o onset loss)", "MSS", "snare"),
    (NASTY, "LarsNet", "FAD_clap", "hihat"),
}
# The paper's RMOD values for two systems (Table I), so that some cells have one and some not.
PAPER = {
    ("RMOD", "Reconstruction", "MSS", "kick"): 1.832,
    ("RMOD", "DOSE", "MSS", "kick"): 3.700,
    ("RMOD", "DOSE", "MSS", "snare"): 4.135,
    ("RMOD", "DOSE", "FAD_vgg", "kick"): 0.920,
    ("RMOD", "DOSE (w/o onset loss)", "MSS", "snare"): 4.2619,  # our cell is missing
}


def build_table() -> TableResult:
    """Values chosen so that each rule shows: the unranked reconstruction row is the lowest
    (not bold), DOSE wins RMOD's MSS kick, and RMOD's FAD_vgg snare is a tie on the shown digits."""
    cells = {}
    for di, d in enumerate(DATASETS):
        for s in SYSTEMS:
            for mi, m in enumerate(METRICS):
                for ki, k in enumerate(DRUMS):
                    if (d, s, m, k) in MISSING_KEYS:
                        continue
                    base = {"Reconstruction": 1.0, "LarsNet": 5.0, "DOSE": 3.7}.get(s, 4.3)
                    value = base + 0.01 * ki + 0.2 * mi + 0.05 * di
                    if m == "MSS":
                        cells[(d, s, m, k)] = Cell(value, n=20 + di)
                    else:
                        cells[(d, s, m, k)] = Cell(
                            value,
                            n=40,
                            fad_inf=value - 0.25,
                            ci_low=value - 0.125,
                            ci_high=value + 0.5,
                            warning="n <= d: rank-deficient covariance"
                            if m == "FAD_clap"
                            else None,
                        )
    cells[("RMOD", "DOSE", "MSS", "kick")] = Cell(3.9104, n=20)
    cells[("RMOD", "LarsNet", "FAD_vgg", "snare")] = Cell(2.0001, n=40)
    cells[("RMOD", "DOSE", "FAD_vgg", "snare")] = Cell(
        2.0004, n=40, fad_inf=1.5, ci_low=1.75, ci_high=2.25
    )
    return TableResult(DATASETS, SYSTEMS, METRICS, DRUMS, cells, dict(PAPER))


def _tone(seconds: float, sr: int, channels: int, freq: float) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-4 * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def build_report_inputs(
    folder: Path,
) -> tuple[TableResult, list[ExampleClip], dict, dict[Path, float]]:
    """The table, examples (2 datasets x kick/hihat x 1 row, WAVs of 0.5 s, 0.75 s and 1.0 s at
    44.1 / 22.05 / 16 kHz, mono and stereo, one file name with a space and ``#``, one system
    missing), settings, and each WAV's duration in seconds by path relative to ``folder``."""
    specs = {  # what: (seconds, rate, channels)
        "mix": (1.0, 44100, 2),
        "truth": (0.5, 44100, 1),
        "Reconstruction": (0.5, 44100, 1),
        "LarsNet": (0.75, 22050, 2),
        "DOSE": (1.0, 16000, 1),
    }
    durations: dict[Path, float] = {}
    examples = []
    for di, d in enumerate(DATASETS):
        for drum in ("kick", "hihat"):
            row = f"test-{di:08d}"
            paths = {}
            for j, (what, (sec, sr, ch)) in enumerate(specs.items()):
                if (di, drum, what) == (1, "hihat", "LarsNet"):
                    continue  # a system that produced nothing for this row
                name = (
                    f"{row} #{what}.wav"
                    if (di, drum, what) == (0, "kick", "mix")
                    else f"{row}.{what}.wav"
                )
                rel = Path("audio") / f"ds{di}" / drum / name
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(folder / rel, _tone(sec, sr, ch, 200.0 * (j + 1)), sr, subtype="PCM_16")
                durations[rel] = round(sec * sr) / sr
                paths[what] = rel
            estimates = {s: paths[s] for s in ("Reconstruction", "LarsNet", "DOSE") if s in paths}
            examples.append(ExampleClip(d, drum, row, paths["mix"], paths["truth"], estimates))
    settings = {
        "datasets": {"RMOD": "/data/rmod", NASTY: "/data/x"},
        "split": "test",
        "n": 20,
        "models": {"kick": "3f" * 32, "hihat": "a1" * 32},
        "embeddings": {
            "vggish": {"sha256": "be" * 32, "pad": "zero to 1 s"},
            "clap": {"pad": "repeat"},
        },
        "seeds": [1, 2, 3],
    }
    return build_table(), examples, settings, durations


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.audio, self.img, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "audio":
            self.audio.append(a)
        elif tag == "img":
            self.img.append(a)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------------------------------------


def test_markdown_has_values_paper_bold_best_and_escapes():
    md = write_table_markdown(build_table())
    lines = md.splitlines()
    assert lines[0].startswith(
        "| Dataset | System | MSS kick | MSS snare | MSS hihat | FAD\\_vgg kick"
    )
    rmod_dose = next(li for li in lines if li.startswith("|  | DOSE |"))
    assert "**3.910** (paper 3.700)" in rmod_dose  # ours rounded, bold, the paper's beside
    rmod_recon = next(li for li in lines if li.startswith("| RMOD | Reconstruction |"))
    assert "| 1.000 (paper 1.832) |" in rmod_recon  # lowest, but the ceiling is not ranked
    assert "**" not in rmod_recon
    wo = next(li for li in lines if "DOSE (w/o onset loss)" in li)
    assert "| – (paper 4.262) |" in wo  # missing cell, paper value still shown
    # FAD_vgg snare on RMOD: 2.0001 vs 2.0004 show as 2.000: both bold.
    larsnet = next(li for li in lines if li.startswith("|  | LarsNet |"))
    assert larsnet.split(" | ")[6] == "**2.000**" and rmod_dose.split(" | ")[6] == "**2.000**"
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "| FAD | FAD∞ | interval | n | warning |" in md
    assert "| RMOD | DOSE | FAD\\_vgg | snare | 2.000 | 1.500 | [1.750, 2.250] | 40 |  |" in md
    assert "†" in md and "rank-deficient covariance" in md
    assert "(paper" not in write_table_markdown(build_table(), show_paper=False)


def test_best_needs_two_ranked_values():
    t = build_table()
    assert best_systems(t, "RMOD", "MSS", "kick") == {"DOSE"}
    assert best_systems(t, "RMOD", "MSS", "kick", unranked=()) == {"Reconstruction"}
    only = TableResult(
        ("a",),
        ("Reconstruction", "DOSE"),
        ("MSS",),
        ("kick",),
        {("a", "DOSE", "MSS", "kick"): Cell(1.0, 3)},
    )
    assert best_systems(only, "a", "MSS", "kick") == set()
    assert "**" not in write_table_markdown(only)


def test_csv_one_line_per_cell_full_precision():
    t = build_table()
    rows = list(csv.DictReader(io.StringIO(write_table_csv(t))))
    assert len(rows) == len(t.cells) + 1  # + the missing cell that has a paper value
    assert list(rows[0]) == [
        "dataset",
        "system",
        "metric",
        "drum",
        "value",
        "n",
        "fad_inf",
        "ci_low",
        "ci_high",
        "warning",
        "paper",
    ]
    by_key = {(r["dataset"], r["system"], r["metric"], r["drum"]): r for r in rows}
    dose = by_key[("RMOD", "DOSE", "MSS", "kick")]
    assert (dose["value"], dose["n"], dose["paper"], dose["fad_inf"]) == ("3.9104", "20", "3.7", "")
    gone = by_key[("RMOD", "DOSE (w/o onset loss)", "MSS", "snare")]
    assert (gone["value"], gone["n"], gone["paper"]) == ("", "", "4.2619")
    clap = by_key[(NASTY, "DOSE", "FAD_clap", "hihat")]
    assert math.isclose(float(clap["ci_high"]) - float(clap["value"]), 0.5)
    assert clap["warning"] == "n <= d: rank-deficient covariance"
    assert (NASTY, "LarsNet", "FAD_clap", "hihat") not in by_key


def test_cells_outside_the_axes_are_refused():
    t = build_table()
    bad = TableResult(
        t.datasets,
        t.systems,
        t.metrics,
        t.drums,
        {**t.cells, ("RMOD", "Nobody", "MSS", "kick"): Cell(1.0, 1)},
    )
    with pytest.raises(ReportError, match="system 'Nobody'"):
        write_table_csv(bad)


def test_report_links_only_existing_files_and_escapes(tmp_path):
    table, examples, settings, durations = build_report_inputs(tmp_path)
    index = write_report(tmp_path, table, examples, settings)
    assert index == tmp_path / "index.html"
    page = index.read_text(encoding="utf-8")
    p = _Sources()
    p.feed(page)
    # Every clip slot has a player: 4 examples x 5 clips, less one missing system.
    assert len(p.audio) == 19
    assert {a["preload"] for a in p.audio} == {"metadata"} and all("controls" in a for a in p.audio)
    srcs = {Path(unquote(a["src"])) for a in p.audio}
    assert srcs == set(durations)  # exactly the WAVs, URL-quoted (a space and a '#')
    assert any("%20%23" in a["src"] for a in p.audio)
    imgs = [Path(unquote(i["src"])) for i in p.img]
    assert len(imgs) == 19 + 1  # a spectrogram per clip, the table figure
    for rel in imgs:
        assert (tmp_path / rel).is_file(), rel
    for rel in durations:
        assert _png_size(tmp_path / "img" / rel.with_suffix(".png")) == (320, 160)
    # Escaped everywhere: the only script-like text is the escaped dataset name.
    assert "script" not in p.tags and "<script" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing from the network
    assert '<b>3.910</b> <span class="paper">(paper 3.700)</span>' in page
    assert '>1.000 <span class="paper">(paper 1.832)</span>' in page
    assert "FAD∞ 1.500<br>[1.750, 2.250]" in page
    assert "3f" * 32 in page and "zero to 1 s" in page


@pytest.mark.parametrize(
    "bad, why",
    [
        (Path("../outside.wav"), "leads out of the report folder"),
        (Path("/tmp/abs.wav"), "must be relative"),
        (Path("audio/none.wav"), "does not exist"),
    ],
)
def test_report_refuses_bad_clip_paths(tmp_path, bad, why):
    (tmp_path / "report").mkdir()
    sf.write(tmp_path / "outside.wav", np.zeros(100, np.float32), 8000)
    sf.write(tmp_path / "report" / "ok.wav", np.zeros(100, np.float32), 8000)
    t = build_table()
    clip = ExampleClip("RMOD", "kick", "test-1", Path("ok.wav"), Path("ok.wav"), {"DOSE": bad})
    with pytest.raises(ReportError, match=f"RMOD/kick/test-1, DOSE: .*{why}"):
        write_report(tmp_path / "report", t, [clip], {})
    assert not (tmp_path / "report" / "index.html").exists()


@pytest.mark.parametrize("subtype, ok", [("FLOAT", True), ("DOUBLE", False)])
def test_report_refuses_wavs_browsers_cannot_play(tmp_path, subtype, ok):
    """Chromium plays float32 WAV but not float64 ("media error 4", seen with chromium 156)."""
    sf.write(tmp_path / "x.wav", np.zeros((800, 2), np.float32), 8000, subtype=subtype)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    clip = ExampleClip("RMOD", "kick", "test-1", Path("x.wav"), Path("x.wav"), {})
    if ok:
        assert write_report(tmp_path, build_table(), [clip], {}).is_file()
    else:
        with pytest.raises(ReportError, match=r"Mixture: .*x\.wav is 64-bit float"):
            write_report(tmp_path, build_table(), [clip], {})
    undecodable = ExampleClip("RMOD", "kick", "test-1", Path("bad.wav"), Path("bad.wav"), {})
    with pytest.raises(ReportError, match=r"bad\.wav: cannot decode audio"):
        write_report(tmp_path, build_table(), [undecodable], {})


def test_mel_db_levels_and_short_clips():
    sr = 16000
    t = np.arange(sr) / sr
    db, hop = mel_db(np.sin(2 * np.pi * 1000 * t), sr)
    peak = db.mean(axis=0)
    mel = 1127 * np.log1p(np.array([1000, sr / 2]) / 700)
    assert abs(int(np.argmax(peak)) + 1 - mel[0] / mel[1] * 65) <= 1  # the band at 1 kHz
    assert -1.0 < peak.max() < 3.0  # a full-scale sine is about 0 dB
    assert db.shape[0] == sr // hop + 1
    short, _ = mel_db(np.zeros(50), sr)  # shorter than a window
    assert short.shape[0] >= 1 and np.all(short == -100.0)


def test_plot_table_writes_a_figure(tmp_path):
    out = plot_table(build_table(), tmp_path / "t.png")
    w, h = _png_size(out)
    assert w == 1080 and h == 560
