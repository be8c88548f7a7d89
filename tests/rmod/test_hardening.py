"""Hostile input, round 2 (issue 20): Groove resume (fault 2), MIDI bombs (3), special
files (6), symbolic link loops (8), ``render-one --from`` (9) and containment (12). Each
test fails on the code before the fix (a wrong result, a traceback, or a cap it blows) and
holds the limit ``docs/THREATS.md`` lists."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rmod.build.manifest import (
    BuildInfo,
    ManifestError,
    iter_manifest,
    read_build_info,
    write_build_info,
)
from rmod.errors import InputError
from rmod.example.groove import recipe_grooves, scan_midi_dir
from rmod.library.catalog import LibraryError, read_library
from rmod.library.hashing import split_for_hash
from rmod.limits import MAX_BLANK_LINES, MAX_LINE_BYTES, MAX_MIDI_BYTES, MAX_MIDI_NOTES
from tests.rmod.hostile import cli_code, hits, midi_file, run_capped, tempo
from tests.rmod.test_groove import GOOD, _groove_recipe, _midi_in_every_split, _write_midi
from tests.rmod_fixtures import write_tiny_recipe
from tests.sf2_fixture import TPreset, TZone, write_sf2


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ----------------------------------------------------------------------------- fault 2


def test_groove_resume_with_an_added_midi_file_is_refused(tmp_path, small_library, capsys):
    """A Groove build records its MIDI files' SHA-256 in build.json; adding a file before
    the rerun is refused naming it (the old code resumed and mixed two MIDI sets)."""
    from rmod.cli.build import main as build_main

    midi = tmp_path / "midi"
    files = _midi_in_every_split(midi)
    recipe_path = _groove_recipe(tmp_path)
    out = tmp_path / "ds"
    argv = ["--n", "3", "--out", str(out), "--recipe", recipe_path, "--midi-dir", str(midi)]
    argv += ["--library", str(small_library.path), "--jobs", "1", "--no-progress"]
    assert build_main(argv) == 0
    capsys.readouterr()
    _write_midi(midi / "a-new.mid", GOOD + [(3.3, 42)])
    assert build_main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "midi_files: the MIDI files (--midi-dir) differ from this build's: first a-new.mid: added"
        in err
    )
    recorded = read_build_info(out).midi_files
    assert recorded == {
        name: hashlib.sha256((midi / name).read_bytes()).hexdigest() for name in files.values()
    }
    (midi / "a-new.mid").unlink()
    assert build_main(argv) == 0  # the recorded set again: resumes
    assert "0 rendered + " in capsys.readouterr().out


def test_groove_plan_and_workers_refuse_a_changed_file(tmp_path, small_library):
    """An edited file is refused by name at the rerun (build.json) and by a worker of the
    running build (the recipe carries the planned hashes), even one that scanned before."""
    from rmod.build.run import BuildOptions, BuildRefused, plan_build, prepare_output

    midi = tmp_path / "midi"
    files = _midi_in_every_split(midi)
    options = BuildOptions(
        n=3, out=tmp_path / "ds", recipe=_groove_recipe(tmp_path), midi_dir=midi,
        library=str(small_library.path), jobs=1, progress=False,
    )  # fmt: skip
    plan = plan_build(options)
    prepare_output(plan.out, plan.info)
    victim = sorted(files.values())[0]
    split = recipe_grooves(plan.recipe).files[victim]
    for k in range(400):  # an edit that keeps the file's split, so every split keeps a file
        _write_midi(midi / victim, GOOD + [(3.0 + k / 1000, 42), (3.5, 36)])
        digest = hashlib.sha256((midi / victim).read_bytes()).hexdigest()
        if split_for_hash("midi:" + digest) == split:
            break
    again = plan_build(options)
    with pytest.raises(BuildRefused, match=f"first {victim}: changed"):
        prepare_output(again.out, again.info)
    assert recipe_grooves(again.recipe).hashes == again.info.midi_files  # a new worker's view
    with pytest.raises(InputError, match=f"MIDI files changed since .*{victim}: changed"):
        recipe_grooves(plan.recipe)


def test_build_json_without_the_new_fields_reads_as_before(tmp_path):
    """Older build.json files (no midi_files, no library_sources) read, and write back the
    same bytes; the schema accepts both fields."""
    from tests.rmod.test_build import BUILD_INFO, SCHEMA, validate

    write_build_info(tmp_path, BuildInfo(**BUILD_INFO))
    old_bytes = (tmp_path / "build.json").read_bytes()
    info = read_build_info(tmp_path)
    assert info.midi_files is None and info.library_sources is None
    write_build_info(tmp_path, info)
    assert (tmp_path / "build.json").read_bytes() == old_bytes
    schema = json.loads(SCHEMA.read_text())
    new = BuildInfo(**BUILD_INFO, midi_files={"a.mid": "0" * 64}, library_sources={"x": "y"})
    assert validate(new.to_dict(), schema["$defs"]["build"], schema) == []


def test_builtin_resume_with_other_soundfonts_is_refused_before_generating(tmp_path, monkeypatch):
    """A build of the built-in library records the fonts (and espeak-ng) it came from; a
    rerun with another set is refused naming the first font that differs, before the
    library is generated for the new set (which takes minutes)."""
    import rmod.build.plan as plan_module
    from rmod.build.plan import BuildOptions, BuildRefused, make_build_info, plan_build
    from rmod.library.builtin.generate import Sources
    from rmod.recipe.spec import load_recipe

    monkeypatch.setenv("RMOD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RMOD_SOUNDFONTS", "")
    monkeypatch.setenv("RMOD_ESPEAK", "0")
    recorded = Sources.detect().record()
    assert list(recorded) == ["sf2:TimGM6mb.sf2"] and len(recorded["sf2:TimGM6mb.sf2"]) == 64
    out = tmp_path / "ds"
    out.mkdir()
    lib = SimpleNamespace(fingerprint="f" * 64)
    counts = {"train": 1, "valid": 1, "test": 1}
    info = make_build_info(load_recipe(None), lib, None, 0, counts, 1, "wav", recorded)
    write_build_info(out, info)
    assert read_build_info(out).library_sources == recorded
    kit = tmp_path / "my kit.sf2"
    hit = np.random.default_rng(1).uniform(-0.5, 0.5, 2000) * np.exp(-np.arange(2000) / 300)
    write_sf2(kit, [TPreset("kit", 0, 0, [TZone(hit, root=36, keys=(36, 36))])])
    monkeypatch.setenv("RMOD_SOUNDFONTS", str(kit))

    def no_load(*args, **kwargs):
        raise AssertionError("the library was loaded (generated) before the refusal")

    monkeypatch.setattr(plan_module.Library, "load", no_load)
    with pytest.raises(BuildRefused, match="library_sources: .* first sf2:my kit.sf2: added"):
        plan_build(BuildOptions(n=1, out=out, progress=False))


# ----------------------------------------------------------------------------- fault 3


def _scan_code(folder: Path) -> str:
    return (
        "from rmod.example.groove import scan_midi_dir\n"
        f"g = scan_midi_dir({str(folder)!r})\n"
        "print(sorted(g.files)); print(g.refused)"
    )


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        # 1 tick per beat at 16.7 s per beat, hits at tick 0 and 20 M: 10^8 windows (hung > 60 s)
        (
            "tempo.mid",
            midi_file([tempo(0xFFFFFF), *hits(0), *hits(20_000_000)], 1),
            "3.35544e+08 s",
        ),
        # hits at tick 2^27 (3.2 GB for miditoolkit's tick table)
        ("tick.mid", midi_file([*hits(0), *hits(1 << 27)]), "139810 s"),
    ],
)
def test_midi_bombs_are_refused_by_the_time_limit(tmp_path, name, data, reason):
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / name).write_bytes(data)
    assert len(data) < 100
    start = time.perf_counter()
    proc = run_capped(_scan_code(tmp_path / "midi"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    files, refused = proc.stdout.strip().splitlines()
    assert files == "[]" and f"a drum note at {reason}" in refused
    assert "MAX_MIDI_SECONDS = 3600" in refused
    assert time.perf_counter() - start < 30


def test_a_huge_tick_span_costs_nothing_when_the_time_is_short(tmp_path):
    """2^27 ticks at 1 microsecond per beat (1 tick per beat) is 134 s: the file is used
    and its windows found without a per-tick table (the old code needed > 1.5 GB)."""
    (tmp_path / "midi").mkdir()
    data = midi_file([tempo(1), *hits(0), *hits(1 << 27)], 1)
    (tmp_path / "midi" / "fast.mid").write_bytes(data)
    code = (
        _scan_code(tmp_path / "midi")
        + "\nprint(sorted(w.start_s for ws in g.windows.values() for w in ws))"
    )
    proc = run_capped(code, timeout=60, mem_bytes=1536 << 20)
    assert proc.returncode == 0, proc.stderr
    files, refused, starts = proc.stdout.strip().splitlines()
    assert files == "['fast.mid']" and refused == "[]"
    assert json.loads(starts) == [0.0, 132.0]  # 134.2 s lies in the window from 132 s


def test_midi_size_and_note_limits(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    (folder / "big.mid").write_bytes(midi_file([*hits(0)]) + b"\0" * MAX_MIDI_BYTES)
    notes = [b"\x00\x99\x24\x64"] + [b"\x01\x24\x64", b"\x00\x24\x00"] * (MAX_MIDI_NOTES + 1)
    (folder / "many.mid").write_bytes(midi_file(notes))
    refused = dict(scan_midi_dir(folder).refused)
    assert f"more than MAX_MIDI_BYTES = {MAX_MIDI_BYTES}" in refused[str(folder / "big.mid")]
    assert f"MAX_MIDI_NOTES = {MAX_MIDI_NOTES}" in refused[str(folder / "many.mid")]


def test_render_one_on_a_midi_bomb_is_a_one_line_error(tmp_path, small_library):
    """rmod-render-one --midi-dir on the 74-byte bomb (hung past 60 s before): the file is
    skipped with its reason, then the one-line error that no window is left."""
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "bomb.mid").write_bytes(
        midi_file([tempo(0xFFFFFF), *hits(0), *hits(20_000_000)], 1)
    )
    argv = ["--recipe", _groove_recipe(tmp_path), "--library", str(small_library.path)]
    argv += ["--midi-dir", str(tmp_path / "midi"), "--out", str(tmp_path / "out"), "--no-overview"]
    proc = run_capped(cli_code("render_one", argv), timeout=90)
    assert proc.returncode == 2, proc.stderr
    skipped, error = proc.stderr.strip().splitlines()
    assert "bomb.mid: a drum note at" in skipped and "MAX_MIDI_SECONDS" in skipped
    assert error.startswith("rmod-render-one: error:") and "no Groove window" in error


def test_seeded_mutations_of_a_midi_file_end_in_windows_or_a_reason(tmp_path):
    """300 seeded mutations of a drum MIDI file (bytes, delta times, tempo): each scan ends
    with the file used or refused with one line, each within a second, under 1.5 GB."""
    _write_midi(tmp_path / "base.mid", GOOD)
    code = f"""
import time
import numpy as np
from pathlib import Path
from rmod.example.groove import scan_midi_dir
data = Path({str(tmp_path / "base.mid")!r}).read_bytes()
folder = Path({str(tmp_path / "m")!r}); folder.mkdir()
rng = np.random.default_rng(3)
used = refused = 0; slowest = 0.0
for k in range(300):
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        at = int(rng.integers(14, len(buf)))
        roll = rng.random()
        if roll < 0.4:
            buf[at] = int(rng.integers(0, 256))
        elif roll < 0.7:
            buf[at:at] = bytes([0xff, 0xff, 0xff, 0x7f])[: int(rng.integers(1, 5))]
        else:
            buf[at:at] = bytes([0x00, 0xff, 0x51, 0x03]) + bytes(rng.integers(0, 256, 3).tolist())
    (folder / "m.mid").write_bytes(bytes(buf))
    t = time.perf_counter()
    g = scan_midi_dir(folder, window_s=1.0, sample_rate=22050)
    slowest = max(slowest, time.perf_counter() - t)
    assert len(g.files) + len(g.refused) == 1
    for _, why in g.refused:
        assert why and "\\n" not in why
    used += len(g.files); refused += len(g.refused)
print(used, refused, slowest)
"""
    proc = run_capped(code, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    used, refused, slowest = proc.stdout.split()
    assert int(used) > 0 and int(refused) > 0 and float(slowest) < 1.0


# ----------------------------------------------------------------------------- fault 6


@pytest.fixture(scope="module")
def rendered(small_library, tmp_path_factory) -> Path:
    """An example.json rendered from the small library with a tiny recipe."""
    from rmod.cli.render_one import main

    folder = tmp_path_factory.mktemp("rendered")
    recipe = write_tiny_recipe(folder, sample_rate=22050)
    argv = ["--recipe", recipe, "--library", str(small_library.path), "--seed", "3"]
    assert main(argv + ["--out", str(folder / "ex"), "--no-overview"]) == 0
    return folder / "ex" / "example.json"


def test_dev_zero_as_library_is_refused_at_once(tmp_path, rendered):
    """--library /dev/zero, and an example.json naming /dev/zero as its library, read until
    the OOM killer before; now one line naming the device."""
    doc = json.loads(rendered.read_text())
    doc["library"]["path"] = "/dev/zero"
    (tmp_path / "zero.json").write_text(json.dumps(doc))
    cases = [
        ("library", ["info", "/dev/zero"]),
        ("render_one", ["--library", "/dev/zero", "--out", str(tmp_path / "a")]),
        ("render_one", ["--from", str(tmp_path / "zero.json"), "--out", str(tmp_path / "b")]),
    ]
    for module, argv in cases:
        proc = run_capped(cli_code(module, argv), timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = _one_line(proc.stderr)
        assert "/dev/zero: a device, not a regular file" in line, line


def _gzip_bomb(path: Path, line: bytes, gigabytes: int = 2) -> Path:
    """A gzip file of ``line`` repeated to ``gigabytes`` GiB: one 32 MiB member written again
    and again (a few kB each)."""
    block = gzip.compress(line * ((32 << 20) // len(line)), compresslevel=9)
    with open(path, "wb") as fh:
        for _ in range(gigabytes * 32):
            fh.write(block)
    return path


def test_gzip_manifest_bombs_stop_at_the_line_limits(tmp_path):
    """A 2 MB gzip manifest that inflates to 2 GiB (4.3 GB of memory before): a line longer
    than MAX_LINE_BYTES or more than MAX_BLANK_LINES blank lines stops the read at once,
    from render-one --from and from every manifest reader."""
    one_line = _gzip_bomb(tmp_path / "train.jsonl.gz", b" ")
    blank = _gzip_bomb(tmp_path / "blank.jsonl.gz", b"\n")
    assert one_line.stat().st_size < 4 << 20
    argv = ["--from", str(one_line), "--id", "train-00000000", "--out", str(tmp_path / "o")]
    proc = run_capped(cli_code("render_one", argv), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{one_line}:1: a line longer than MAX_LINE_BYTES = {MAX_LINE_BYTES}" in _one_line(
        proc.stderr
    )
    with pytest.raises(ManifestError, match="MAX_LINE_BYTES"):
        next(iter_manifest(one_line))
    with pytest.raises(ManifestError, match=f"MAX_BLANK_LINES = {MAX_BLANK_LINES}"):
        next(iter_manifest(blank))


def test_fifos_are_refused_without_blocking(tmp_path):
    """A FIFO as library, build.json, manifest or MIDI file is refused by its type (the old
    readers blocked forever waiting for a writer)."""
    fifo = tmp_path / "lib.jsonl"
    os.mkfifo(fifo)
    (tmp_path / "ds").mkdir()
    os.mkfifo(tmp_path / "ds" / "build.json")
    (tmp_path / "midi").mkdir()
    os.mkfifo(tmp_path / "midi" / "take.mid")
    code = f"""
from rmod.build.manifest import ManifestError, iter_manifest, read_build_info
from rmod.example.groove import scan_midi_dir
from rmod.library.catalog import LibraryError, read_library
from rmod.library.hashing import split_for_hash
from rmod.limits import FileRefused
for call in (lambda: read_library({str(fifo)!r}), lambda: read_build_info({str(tmp_path / "ds")!r}),
             lambda: next(iter_manifest({str(fifo)!r}))):
    try:
        call()
    except (LibraryError, ManifestError, FileRefused) as exc:
        print(exc)
print(scan_midi_dir({str(tmp_path / "midi")!r}).refused[0][1])
"""
    proc = run_capped(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and all("a FIFO, not a regular file" in ln for ln in lines), lines


# ----------------------------------------------------------------------------- fault 8


def _loop(path: Path) -> Path:
    path.symlink_to(path.name)
    return path


def test_symbolic_link_loops_are_one_line_errors(tmp_path, small_library, capsys):
    """A link loop given as --out, --library, --midi-dir or the folder/file of rmod-library
    index/soundfont/info: exit 2 with one line (a RuntimeError traceback, exit 3, before)."""
    from rmod.cli.build import main as build
    from rmod.cli.library import main as library
    from rmod.cli.render_one import main as render_one

    loop = _loop(tmp_path / "loop")
    lib = str(small_library.path)
    recipe = write_tiny_recipe(tmp_path, sample_rate=22050)
    groove = _groove_recipe(tmp_path)
    src = tmp_path / "src"
    (src / "kick").mkdir(parents=True)
    kit = tmp_path / "kit.sf2"
    write_sf2(kit, [TPreset("kit", 0, 0, [TZone(np.linspace(1, 0, 500), root=36, keys=(36, 36))])])
    calls = [
        (build, ["--n", "1", "--out", str(loop), "--recipe", recipe, "--library", lib]),
        (build, ["--n", "1", "--out", str(tmp_path / "d1"), "--recipe", recipe, "--library", str(loop)]),
        (build, ["--n", "1", "--out", str(tmp_path / "d2"), "--recipe", groove, "--library", lib,
                 "--midi-dir", str(loop)]),
        (render_one, ["--recipe", recipe, "--library", str(loop), "--out", str(tmp_path / "r1")]),
        (render_one, ["--recipe", groove, "--library", lib, "--midi-dir", str(loop),
                      "--out", str(tmp_path / "r2")]),
        (render_one, ["--recipe", recipe, "--library", lib, "--out", str(loop)]),
        (library, ["index", str(loop), "--out", str(tmp_path / "x.jsonl")]),
        (library, ["index", str(src), "--out", str(loop)]),
        (library, ["info", str(loop)]),
        (library, ["soundfont", str(loop), "--out", str(tmp_path / "sf")]),
        (library, ["soundfont", str(kit), "--out", str(loop)]),
    ]  # fmt: skip
    for main, argv in calls:
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert str(loop) in line, (argv, line)


# ----------------------------------------------------------------------------- fault 9


def _manifest(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_render_one_from_rows_that_are_not_objects_or_out_of_range(tmp_path, rendered, capsys):
    """A manifest whose first line is ``[]`` (AttributeError before) and a row whose
    ``segment_seconds`` is 1e308 (OverflowError before): one line naming file and field."""
    from rmod.cli.render_one import main

    doc = json.loads(rendered.read_text())
    row = {"id": doc["id"], "params": doc["params"], "recipe": doc["recipe"]}
    listed = _manifest(tmp_path / "train.jsonl", ["[]", json.dumps(row)])
    assert main(["--from", str(listed), "--id", doc["id"], "--out", str(tmp_path / "a")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{listed}:1: expected a JSON object (a row), got a JSON list" in line
    name = next(n for n, p in doc["params"]["instruments"].items() if p.get("loop_id"))
    doc["params"]["instruments"][name]["segment_seconds"] = 1e308
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(doc))
    argv = ["--from", str(huge), "--library", doc["library"]["path"], "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"instruments.{name}.segment_seconds: 1e+308" in err


HOSTILE_LEAVES = [1e308, -1e308, 10**30, -1, 0, "x", None, [], {}, True, 2**63]


def test_seeded_mutations_of_example_json_leaves_are_rendered_or_refused(tmp_path, rendered):
    """200 seeded (leaf, value) mutations of an example.json's params and recipe:
    reading and checking each ends in parameters ready to render or in an rmod error (one
    line per problem), never another exception."""
    from rmod.cli.render_one import _check_params
    from rmod.errors import RmodError
    from rmod.inspect.example_folder import load_example_source
    from rmod.library.catalog import Library

    doc = json.loads(rendered.read_text())

    def leaves(node, path=()):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leaves(v, (*path, k))
        elif isinstance(node, list) and node:
            for i, v in enumerate(node):
                yield from leaves(v, (*path, i))
        else:
            yield path

    paths = [p for p in leaves(doc) if p and p[0] in ("params", "recipe")]
    library = Library.load(doc["library"]["path"])
    rng = np.random.default_rng(9)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(200):
        path = paths[int(rng.integers(len(paths)))]
        value = HOSTILE_LEAVES[int(rng.integers(len(HOSTILE_LEAVES)))]
        mutated = json.loads(json.dumps(doc))
        node = mutated
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        target = tmp_path / "m.json"
        target.write_text(json.dumps(mutated))
        args = SimpleNamespace(from_file=str(target), id=None)
        try:
            src = load_example_source(target)
            _check_params(args, src.params, src.recipe, library)
        except (RmodError, OSError) as exc:
            assert str(exc).strip(), (path, value)
            outcomes["refused"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes


# ----------------------------------------------------------------------------- fault 12


def test_groove_does_not_follow_file_links_out_of_the_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _write_midi(elsewhere / "good.mid", GOOD)
    midi = tmp_path / "midi"
    (midi / "sub").mkdir(parents=True)
    (midi / "out.mid").symlink_to(elsewhere / "good.mid")
    (midi / "sub" / "linked-folder").symlink_to(elsewhere)  # folder links are not walked
    _write_midi(midi / "sub" / "inside.mid", GOOD + [(3.1, 42)])
    (midi / "in.mid").symlink_to(midi / "sub" / "inside.mid")  # stays inside: used
    groove = scan_midi_dir(midi, window_s=1.0, sample_rate=22050)
    assert sorted(groove.files) == ["in.mid", "sub/inside.mid"]
    assert groove.refused == [
        (str(midi / "out.mid"), "a symbolic link out of the folder: not read")
    ]


def test_a_library_root_outside_its_manifest_folder_is_refused(tmp_path, small_library):
    """The manifest no longer chooses where its samples are read from: ``root`` must be the
    manifest's folder or inside it; rmod-library index refuses, before any work, an --out
    that would break this."""
    from rmod.library.indexing import index_library

    lines = small_library.path.read_text().splitlines(keepends=True)
    for root in ("/", "..", str(small_library.root)):
        header = json.dumps({**json.loads(lines[0]), "root": root}) + "\n"
        path = tmp_path / "elsewhere.jsonl"
        path.write_text(header + "".join(lines[1:]))
        with pytest.raises(LibraryError, match=f"{path}:1: root .* is outside the manifest's"):
            read_library(path)
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match="must lie in its sample folder"):
        index_library(small_library.root, tmp_path / "a" / "lib.jsonl")
    assert not (tmp_path / "a" / "lib.jsonl").exists()
    assert len(read_library(small_library.path)[1]) == len(small_library)


def test_library_manifests_are_read_line_by_line(tmp_path, small_library):
    """The fingerprint is the same as the whole-file read gave; a line past MAX_LINE_BYTES
    is refused by line number."""
    text = small_library.path.read_bytes()
    body = text.split(b"\n", 1)[1]
    assert read_library(small_library.path)[2] == hashlib.sha256(body).hexdigest()
    bad = small_library.path.parent / "long.jsonl"
    try:
        bad.write_bytes(text + b" " * (MAX_LINE_BYTES + 1) + b"\n")
        n = text.count(b"\n") + 1
        with pytest.raises(LibraryError, match=f"long.jsonl:{n}: a line longer than"):
            read_library(bad)
    finally:
        bad.unlink()


def test_a_damaged_gzip_manifest_is_named_by_line(tmp_path):
    """Damage inside a gzip stream (zlib.error, which is no OSError) is a ManifestError."""
    data = gzip.compress(bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8)))
    damaged = tmp_path / "d.jsonl.gz"
    damaged.write_bytes(data[:100] + bytes(reversed(data[100:2000])) + data[2000:])
    with pytest.raises(ManifestError, match=r"d.jsonl.gz:\d+: "):
        list(iter_manifest(damaged))


def test_size_limits_are_named(tmp_path, monkeypatch, small_library, rendered):
    """Each size limit refuses a bigger file by its name (the limits set low here, so the
    files stay small): a library manifest, build.json, example.json, a soundfont's header."""
    import rmod.build.manifest
    import rmod.inspect.example_folder
    import rmod.library.builtin.sf2
    import rmod.library.catalog
    from rmod.example.draw import ExampleError
    from rmod.inspect.example_folder import load_example_source
    from rmod.library.builtin.sf2 import SoundFont, SoundFontError, default_sf2_path

    monkeypatch.setattr(rmod.library.catalog, "MAX_LIBRARY_BYTES", 100)
    with pytest.raises(LibraryError, match="more than MAX_LIBRARY_BYTES = 100"):
        read_library(small_library.path)
    from tests.rmod.test_build import BUILD_INFO

    write_build_info(tmp_path, BuildInfo(**BUILD_INFO))
    monkeypatch.setattr(rmod.build.manifest, "MAX_JSON_BYTES", 100)
    with pytest.raises(ManifestError, match="more than MAX_JSON_BYTES = 100"):
        read_build_info(tmp_path)
    monkeypatch.setattr(rmod.inspect.example_folder, "MAX_JSON_BYTES", 100)
    with pytest.raises(ExampleError, match="more than MAX_JSON_BYTES = 100"):
        load_example_source(rendered)
    monkeypatch.setattr(rmod.library.builtin.sf2, "MAX_SF2_PDTA_BYTES", 1000)
    with pytest.raises(SoundFontError, match="more than MAX_SF2_PDTA_BYTES = 1000"):
        SoundFont(default_sf2_path())
