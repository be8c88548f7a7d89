"""dose-eval: Table I over several datasets; every system, MSS and FAD; cache; bad input."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from dose_model.cli.evaluate import main
from dose_model.evaluate.baseline import baseline_oneshot
from dose_model.evaluate.metrics import mss_distance
from tests.dose_fixtures import (  # noqa: F401 (one_thread: autouse fixture)
    REFERENCE_DIR,
    one_thread,
    write_fake_rmod,
    write_tiny_codec,
    write_tiny_dose_checkpoint,
)

HOP = 512
ROWS = 14  # max_target_len: the ground truth is cut to (14 - 10) frames = 2048 samples
SYSTEMS = ("Reconstruction", "LarsNet", "DSP baseline", "DOSE", "DOSE (w/o onset loss)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rmod = write_fake_rmod(root / "rmod", counts={"valid": 1, "test": 3})
    drums = write_fake_rmod(root / "drums", counts={"test": 2}, seed=5)
    codec = write_tiny_codec(root / "codec.pth", loud=True)  # decodes to audible levels
    ckpt = write_tiny_dose_checkpoint(root / "kick.ckpt", max_target_len=ROWS)
    other = write_tiny_dose_checkpoint(root / "other.ckpt", max_target_len=ROWS, seed=3)
    return root, rmod, drums, codec, ckpt, other


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def base_argv(setup, out, cache):
    root, rmod, drums, codec, ckpt, other = setup
    argv = ["--data", f"rmod={rmod}", "--data", f"drums only={drums}"]
    argv += ["--codec-weights", str(codec), "--kick", str(ckpt), "--hihat", str(ckpt)]
    argv += ["--ablation-kick", str(other), "--ablation-hihat", str(other)]
    argv += ["--fad", f"vggish={REFERENCE_DIR / 'vggish_narrow.pth'}"]
    argv += ["--fad", f"clap={REFERENCE_DIR / 'clap_narrow.pt'}"]
    argv += ["--larsnet", str(REFERENCE_DIR / "larsnet_narrow"), "--paper", "--examples", "1"]
    argv += ["--bootstrap", "4", "--no-progress", "--device", "cpu", "--out", str(out)]
    return argv + ["--embedding-cache", str(cache)]


@pytest.mark.slow
def test_table_i_for_two_datasets_has_every_column(setup, tmp_path, capsys):
    root, rmod, drums, codec, ckpt, other = setup
    out = tmp_path / "out"
    assert main(base_argv(setup, out, tmp_path / "cache")) == 0
    printed = capsys.readouterr().out
    assert "FAD\\_vgg" in printed and "FAD\\_clap" in printed and "drums only" in printed
    cells = read_csv(out / "table.csv")
    keys = {(c["dataset"], c["system"], c["metric"], c["drum"]) for c in cells}
    for dataset in ("rmod", "drums only"):
        for system in SYSTEMS:
            for metric in ("MSS", "FAD_vgg", "FAD_clap"):
                for drum in ("kick", "hihat"):
                    assert (dataset, system, metric, drum) in keys
    assert all(math.isfinite(float(c["value"])) for c in cells)
    # the paper's values stand beside ours where the paper has the dataset and system
    paper = {(c["dataset"], c["system"], c["metric"], c["drum"]): c["paper"] for c in cells}
    assert float(paper[("rmod", "DOSE", "MSS", "kick")]) == 3.700
    assert float(paper[("drums only", "LarsNet", "FAD_vgg", "hihat")]) == 2.503
    assert float(paper[("rmod", "DOSE (w/o onset loss)", "FAD_clap", "kick")]) == 0.487
    assert paper[("rmod", "DSP baseline", "MSS", "kick")] == ""
    table = (out / "table.md").read_text()
    assert "3.700" in table and "DSP baseline" in table
    # rows: every system per row and drum; the mean of a system's MSS is its cell
    rows = read_csv(out / "rmod" / "rows.csv")
    assert {r["system"] for r in rows} == {*SYSTEMS, "Silence"}
    assert len(rows) == 3 * 2 * (len(SYSTEMS) + 1)
    mss = {(c["dataset"], c["system"], c["metric"], c["drum"]): float(c["value"]) for c in cells}
    dsp = [float(r["mss"]) for r in rows if r["system"] == "DSP baseline" and r["drum"] == "kick"]
    assert mss[("rmod", "DSP baseline", "MSS", "kick")] == pytest.approx(np.mean(dsp), rel=1e-5)
    n = (ROWS - 10) * HOP
    for r in rows:
        if r["system"] not in ("Silence", "DSP baseline"):
            continue
        folder = rmod / "test" / "000000"
        truth, sr = sf.read(folder / f"{r['id']}_{r['drum']}.wav")
        ref = truth.mean(axis=1)[:n].astype(np.float32)
        if r["system"] == "Silence":
            expected = mss_distance(np.zeros_like(ref), ref)
        else:
            mixture, _ = sf.read(folder / f"{r['id']}_mix.wav", dtype="float32")
            expected = mss_distance(baseline_oneshot(mixture.mean(axis=1), sr, r["drum"], n), ref)
        assert float(r["mss"]) == pytest.approx(expected, rel=1e-4)
    # summary: settings, hashes and every cell with its n and interval
    summary = json.loads((out / "summary.json").read_text())
    assert [d["rows"] for d in summary["datasets"]] == [3, 2]
    assert summary["embedding_models"]["vggish"]["weights_sha256"]
    assert summary["embedding_models"]["clap"]["pad_rule"].startswith("repeat")
    assert summary["models"]["DOSE"]["kick"]["sha256"] != summary["models"][
        "DOSE (w/o onset loss)"]["kick"]["sha256"]  # fmt: skip
    fad_cells = [c for c in summary["cells"] if c["metric"] != "MSS"]
    rmod_fad = [c for c in fad_cells if c["dataset"] == "rmod"]
    assert all(c["fad_inf"] is not None and c["ci_low"] is not None for c in rmod_fad)
    # two rows are too few to fit FAD-inf: null in strict JSON, never NaN
    assert all(c["fad_inf"] is None for c in fad_cells if c["dataset"] == "drums only")
    assert all(c["warning"] for c in fad_cells)  # 3 rows for 128 / 32 dimensions
    assert (out / "table.png").stat().st_size > 0
    html = (out / "report" / "index.html").read_text()
    assert html.count("<audio") >= 2 * (2 + len(SYSTEMS))


@pytest.mark.slow
def test_fad_cell_is_the_frechet_distance_of_the_embeddings(setup, tmp_path):
    """A FAD cell recomputed by hand: the narrow VGGish on every ground truth and every
    reconstruction of the split, then the Fréchet distance."""
    from dose_model.codec.dac_codec import DacCodec
    from dose_model.evaluate.split import _reconstruct
    from dose_model.fad.embedder import load_embedder
    from dose_model.fad.frechet import frechet_distance

    root, rmod, drums, codec_path, ckpt, _ = setup
    out = tmp_path / "out"
    argv = ["--data", f"rmod={rmod}", "--codec-weights", str(codec_path), "--kick", str(ckpt)]
    argv += ["--fad", f"vggish={REFERENCE_DIR / 'vggish_narrow.pth'}", "--bootstrap", "0"]
    argv += ["--no-progress", "--device", "cpu", "--out", str(out), "--examples", "0"]
    assert main(argv + ["--embedding-cache", str(tmp_path / "cache")]) == 0
    cell = next(
        c for c in read_csv(out / "table.csv")
        if (c["system"], c["metric"], c["drum"]) == ("Reconstruction", "FAD_vgg", "kick")
    )  # fmt: skip
    vggish = load_embedder(f"vggish={REFERENCE_DIR / 'vggish_narrow.pth'}")
    codec = DacCodec.load(codec_path, device="cpu")
    n = (ROWS - 10) * HOP
    refs, ests = [], []
    for i in range(3):
        truth, sr = sf.read(rmod / "test" / "000000" / f"test-{i:06d}_kick.wav", dtype="float32")
        ref = truth.mean(axis=1)[:n]
        refs.append(vggish.embed(ref[None], sr))
        ests.append(vggish.embed(_reconstruct(codec, ref)[None], sr))
    expected = frechet_distance(np.concatenate(refs), np.concatenate(ests))
    assert float(cell["value"]) == pytest.approx(expected, rel=1e-4)
    assert not (out / "report").exists()


@pytest.mark.slow
def test_rescoring_reads_embeddings_from_the_cache(setup, tmp_path, monkeypatch):
    root, rmod, drums, codec, ckpt, other = setup
    cache = tmp_path / "cache"
    argv = ["--data", f"rmod={rmod}", "--codec-weights", str(codec), "--hihat", str(ckpt)]
    argv += ["--fad", f"vggish={REFERENCE_DIR / 'vggish_narrow.pth'}", "--bootstrap", "3"]
    argv += ["--no-progress", "--device", "cpu", "--examples", "0", "--embedding-cache", str(cache)]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert any(cache.rglob("*.npy"))
    import dose_model.fad.vggish as vggish

    def boom(*args, **kwargs):
        raise AssertionError("the model ran although every embedding was cached")

    for name in dir(vggish):
        cls = getattr(vggish, name)
        if isinstance(cls, type) and hasattr(cls, "embed"):
            monkeypatch.setattr(cls, "embed", boom)
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "table.csv").read_text() == (tmp_path / "b" / "table.csv").read_text()


@pytest.mark.slow
def test_rows_are_independent_of_batching_and_unreadable_rows_are_skipped(setup, tmp_path, capsys):
    root, rmod, drums, codec, ckpt, other = setup
    data = tmp_path / "data"
    shutil.copytree(rmod, data)
    argv = ["--data", f"rmod={data}", "--codec-weights", str(codec), "--kick", str(ckpt)]
    argv += ["--strategy", "top-p", "--seed", "7", "--no-progress", "--device", "cpu"]
    argv += ["--examples", "0", "--embedding-cache", str(tmp_path / "cache")]
    assert main(argv + ["--out", str(tmp_path / "a"), "--batch-size", "2"]) == 0
    assert main(argv + ["--out", str(tmp_path / "b"), "--batch-size", "3"]) == 0
    a, b = (tmp_path / x / "rmod" / "rows.csv" for x in "ab")
    assert a.read_text() == b.read_text()
    (data / "test" / "000000" / "test-000001_mix.wav").write_bytes(b"not audio")
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "skipped row test-000001" in err and "test-000001_mix.wav" in err
    rows = read_csv(tmp_path / "c" / "rmod" / "rows.csv")
    assert {r["id"] for r in rows} == {"test-000000", "test-000002"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "nonamehere"], "expected NAME=DIR"),
        (["--data", "a=x", "--data", "a=y"], "dataset names must differ"),
        (["--data", "a=x", "--fad", "openl3=w.pth"], "vggish=WEIGHTS or clap=WEIGHTS"),
        (["--data", "a=x", "--wiener", "0"], "--wiener"),
        ([], "give a dataset"),
    ],
)
def test_bad_options_are_one_line_errors(setup, tmp_path, capsys, extra, message):
    root, rmod, drums, codec, ckpt, other = setup
    argv = ["--codec-weights", str(codec), "--kick", str(ckpt), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stop:
        code = main(argv + extra + ["--no-progress", "--device", "cpu"])
        raise SystemExit(code)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("rate", [44100, 22050])
def test_with_larsnet_a_mixture_is_decoded_once_and_the_same(setup, tmp_path, monkeypatch, rate):
    """LarsNet's stereo input and the mono mixture the other systems see come from one decode,
    and the mono is what load_mono reads from the file (at the codec's rate or not)."""
    from dose_model.codec.dac_codec import DacCodec
    from dose_model.dataset.audio import load_mono
    from dose_model.dataset.manifest import read_rows
    from dose_model.evaluate import split as split_mod
    from dose_model.separate.larsnet import load_larsnet
    from dose_model.separate.songs import read_stereo
    from rmod_dose_common import audio as common

    root, rmod, drums, codec_path, ckpt, other = setup
    data = write_fake_rmod(tmp_path / f"r{rate}", counts={"test": 1}, sample_rate=rate)
    row = read_rows(data / "manifests" / "test.jsonl")[0]
    codec = DacCodec.load(str(codec_path), "cpu")
    larsnet = load_larsnet(REFERENCE_DIR / "larsnet_narrow", stems=("kick", "snare", "hihat"))
    systems = split_mod.Systems(codec, {}, larsnet, None, split_mod.GREEDY)
    opened: list[str] = []
    real_init = common.AudioReader.__init__

    def counting_init(self, path, *args, **kwargs):
        opened.append(str(path))
        real_init(self, path, *args, **kwargs)

    monkeypatch.setattr(common.AudioReader, "__init__", counting_init)
    mixture, stereo, truth = split_mod._read_row(row, systems)
    assert opened.count(str(row.mixture)) == 1 and len(opened) == 1 + len(truth)
    monkeypatch.undo()
    window = mixture.shape[0]
    expected = load_mono(row.mixture, codec.sample_rate, window)
    np.testing.assert_array_equal(mixture.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(stereo, read_stereo(row.mixture)[:, :window])
