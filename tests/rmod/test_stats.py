"""rmod-stats: figures match the manifests, recipe overlays match the recipe, plots exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rmod.build.manifest import read_manifest
from rmod.cli.stats import main
from rmod.example.draw import ExampleParams
from rmod.example.render import render_example
from rmod.inspect.quality import HIGH_BAND_TARGET, high_band_share
from rmod.inspect.stats import GROUPS, Metric, compute_stats, summarize
from rmod.recipe.spec import Recipe
from tests.rmod_fixtures import build_tiny

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset(small_library, tmp_path_factory) -> Path:
    """A tiny full-recipe dataset (drums + instruments): 6 train + 1 valid + 1 test."""
    folder = tmp_path_factory.mktemp("stats")
    return build_tiny(folder, small_library.path, "rmod-paper", 6, 4, sample_rate=22050)


@pytest.fixture(scope="module")
def stats(dataset) -> dict:
    return compute_stats(dataset, progress=False)


def all_rows(root: Path):
    return [r for s in ("train", "valid", "test") for r in read_manifest(root / "manifests" / f"{s}.jsonl")]  # fmt: skip


def test_stats_json_matches_the_manifests(dataset, stats):
    on_disk = json.loads((dataset / "stats" / "stats.json").read_text())
    assert on_disk == json.loads(json.dumps(stats))
    assert stats["rows"] == {"train": 6, "valid": 1, "test": 1}
    rows = all_rows(dataset)
    m = stats["metrics"]
    for cls in ("kick", "snare", "hihat"):
        hits = [len(r.params["drums"][cls]["grid"]) for r in rows]
        assert m[f"hits.{cls}"]["count"] == 8
        assert m[f"hits.{cls}"]["mean"] == pytest.approx(np.mean(hits))
        assert sum(m[f"hits.{cls}"]["histogram"]["counts"]) == 8
        assert m[f"hits.{cls}"]["out_of_bounds"] == 0
    weights = [r.params["drums"][c]["weights"][0] for r in rows for c in ("kick", "snare", "hihat")]
    assert m["layering.weight_first"]["count"] == 24
    assert m["layering.weight_first"]["mean"] == pytest.approx(np.mean(weights))
    present = [r.params["instruments"]["bass"]["loop_id"] is not None for r in rows]
    assert m["instruments.present.bass"]["mean"] == pytest.approx(np.mean(present))
    peaks = [r.loudness["mixture_peak_db"] for r in rows]
    assert m["loudness.mixture_peak_db"]["max"] == pytest.approx(max(peaks))
    assert m["loudness.mixture_peak_db"]["reference"] == -1.0
    assert max(peaks) <= -1.0 + 0.01  # the master ceiling holds
    assert sum(v.get("out_of_bounds", 0) for v in m.values()) == 0


def test_recipe_overlay_is_the_recipe_distribution(dataset, stats):
    m = stats["metrics"]
    recipe = json.loads((dataset / "build.json").read_text())["recipe"]
    # randint [2, 4] and [14, 18]: expected means 3 and 16, bounds as in the recipe
    assert m["hits.kick"]["recipe"]["bounds"] == [2.0, 4.0]
    assert m["hits.kick"]["recipe"]["expected_mean"] == pytest.approx(3.0, abs=0.05)
    assert m["hits.hihat"]["recipe"]["expected_mean"] == pytest.approx(16.0, abs=0.1)
    # weights (0.8, 0.2) / (0.7, 0.3) / (0.6, 0.4): first weight averages 0.7
    assert m["layering.weight_first"]["recipe"]["expected_mean"] == pytest.approx(0.7, abs=0.01)
    # drop with p = 0.3: presence 0.7
    assert m["instruments.present.bass"]["recipe"]["expected_mean"] == pytest.approx(0.7, abs=0.02)
    kick_gain = recipe["mixing"]["tracks"]["kick"]["gain_db"]["uniform"]
    assert m["mixing.gain_db.kick"]["recipe"]["bounds"] == kick_gain
    low_shelf = recipe["mixing"]["eq"]["low_shelf"]["freq_hz"]
    assert m["mixing.eq.low_shelf.freq_hz"]["recipe"]["spec"] == low_shelf
    assert (
        m["master.limiter.threshold_db"]["recipe"]["spec"]
        == recipe["master"]["limiter"]["threshold_db"]
    )
    for v in m.values():
        if "recipe" in v:
            assert sum(v["recipe"]["expected_fraction"]) == pytest.approx(1.0, abs=1e-6)
            assert 0.0 <= v["tv_distance"] <= 1.0


def test_plots_are_pngs_one_per_group(dataset, stats):
    assert stats["plots"] == [f"{g}.png" for g in GROUPS if any(
        v["group"] == g for v in stats["metrics"].values())]  # fmt: skip
    assert {"hits.png", "layering.png", "instruments.png", "semitones.png",
            "mixing_eq.png", "loudness.png", "high_band.png"} <= set(stats["plots"])  # fmt: skip
    for name in stats["plots"]:
        data = (dataset / "stats" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000


def test_summarize_counts_out_of_bounds_and_distance():
    rng = np.random.default_rng(5)
    metric = Metric("x", "mixing_eq", {"uniform": [0.0, 1.0]})
    for v in rng.uniform(0.0, 1.0, 4000):
        metric.add(v)
    close = summarize(metric)
    assert close["out_of_bounds"] == 0 and close["tv_distance"] < 0.1
    metric.add(1.5)
    metric.add(None)  # silence: skipped
    assert summarize(metric)["out_of_bounds"] == 1
    skewed = Metric("y", "mixing_eq", {"uniform": [0.0, 1.0]})
    for v in rng.uniform(0.0, 0.3, 4000):
        skewed.add(v)
    assert summarize(skewed)["tv_distance"] > 0.5


def test_cli(dataset, tmp_path, capsys):
    args = [str(dataset), "--out", str(tmp_path / "s"), "--no-plots", "--no-progress"]
    assert main([*args, "--high-band", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rmod-stats: 8 rows") and "0 values outside recipe bounds" in out
    assert (tmp_path / "s" / "stats.json").exists() and not list((tmp_path / "s").glob("*.png"))
    on_disk = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert on_disk["high_band"] == {"skipped": "not asked for"}
    assert "high_band.share" not in on_disk["metrics"]
    assert main([str(tmp_path), "--no-progress"]) == 2
    assert "no build.json" in capsys.readouterr().err


def test_cli_names_a_missing_manifest(dataset, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(dataset, partial)
    (partial / "manifests" / "valid.jsonl").unlink()
    assert main([str(partial), "--no-plots", "--no-progress"]) == 2
    assert "valid.jsonl: manifest is missing" in capsys.readouterr().err
    assert main([str(partial), "--splits", "train", "test", "--no-plots", "--no-progress"]) == 0


@pytest.mark.parametrize("edit", [{"drums": 5}, {"audio": 5}], ids=["drums", "audio"])
def test_cli_names_a_build_json_recipe_that_is_not_a_recipe(dataset, tmp_path, capsys, edit):
    bad = Path(shutil.copytree(dataset, tmp_path / "bad"))
    info = json.loads((bad / "build.json").read_text())
    info["recipe"].update(edit)
    (bad / "build.json").write_text(json.dumps(info))
    assert main([str(bad), "--out", str(tmp_path / "s"), "--no-plots", "--no-progress"]) == 2
    err = capsys.readouterr().err
    key = next(iter(edit))
    assert (
        err
        == f"rmod-stats: error: {bad / 'build.json'}: recipe: {key}: expected a mapping, got int\n"
    )
    assert not (tmp_path / "s").exists()


def test_sources_group_reads_the_library(dataset, stats, small_library):
    """One-shots used, per class: none recorded in the small library, families of one."""
    m = stats["metrics"]
    for cls in ("kick", "snare", "hihat"):
        assert m[f"sources.recorded.{cls}"]["count"] == 16  # 8 rows x 2 layered one-shots
        assert m[f"sources.recorded.{cls}"]["mean"] == 0.0
        assert m[f"sources.family_size.{cls}"]["mean"] == 1.0
    assert "sources.png" in stats["plots"]
    for name in ("recorded", "family_size"):
        assert m[f"sources.{name}.kick"]["reference"] == (0.0 if name == "recorded" else 1.0)


def test_sources_are_measured_against_uniform_draws_from_the_library():
    """A kick family of three velocity layers (recorded) and one synthesized kick: uniform
    draws give a recorded share of 3/4 and a mean family size of (3 * 3 + 1) / 4."""
    from types import SimpleNamespace

    from rmod.inspect.stats import Collector

    def entry(i, source, family):
        return SimpleNamespace(
            id=f"kick/{i}", cls="kick", source=source, family=family, sha256=str(i) * 64
        )

    entries = [entry(i, "sf2:Kit.sf2", "kick/Kit.sf2:128:0:36") for i in range(3)]
    entries.append(entry(3, "synth", ""))
    by_id = {e.id: e for e in entries}

    class Library:
        def __contains__(self, entry_id):
            return entry_id in by_id

        entry = staticmethod(by_id.__getitem__)

        def ids(self, cls, split):
            return tuple(by_id) if (cls, split) == ("kick", "train") else ()

    library = Library()
    library.entries = entries
    collector = Collector({}, library)
    collector._add_sources(SimpleNamespace(sources={"kick": ["kick/0", "kick/3", "kick/3"]}))
    recorded, size = (
        collector.metrics["sources.recorded.kick"],
        collector.metrics["sources.family_size.kick"],
    )
    assert recorded.reference == 0.75 and size.reference == 2.5
    assert list(recorded.values) == [1.0, 0.0, 0.0] and list(size.values) == [3.0, 1.0, 1.0]


def test_high_band_share_rerenders_the_rows(dataset, stats, small_library):
    """The first examples re-rendered from their rows' params give the shares plotted
    against the target; every row is used when there are fewer than asked for."""
    info = json.loads((dataset / "build.json").read_text())
    recipe = Recipe.from_dict(info["recipe"], source="test")
    shares = []
    for row in all_rows(dataset):
        out = render_example(ExampleParams.from_dict(row.params), recipe, small_library)
        shares.append(high_band_share(out.stems, out.sample_rate))
    m = stats["metrics"]["high_band.share"]
    assert m["count"] == 8 and m["reference"] == HIGH_BAND_TARGET
    assert m["mean"] == pytest.approx(np.mean(shares), rel=1e-9)
    assert stats["high_band"]["median"] == pytest.approx(np.median(shares), rel=1e-9)
    assert m["median"] == stats["high_band"]["median"]
    assert 0.0 <= m["min"] <= m["max"] <= 1.0 and m["max"] > 0.0
    assert "high_band.png" in stats["plots"]
    two = compute_stats(dataset, out_dir=dataset / "two", plots=False, progress=False, high_band=2)
    assert two["high_band"]["examples"] == 2
    assert two["metrics"]["high_band.share"]["mean"] == pytest.approx(np.mean(shares[:2]))


def test_high_band_share_needs_the_build_library(dataset, tmp_path):
    """A library that is not the one the build used: the share is skipped with the reason."""
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    info = json.loads((moved / "build.json").read_text())
    info["library_fingerprint"] = "0" * 64
    (moved / "build.json").write_text(json.dumps(info))
    stats = compute_stats(moved, plots=False, progress=False)
    assert stats["high_band"] == {"skipped": "the build's library cannot be read as it was built"}


def test_high_band_share_is_skipped_for_rows_it_cannot_rebuild(dataset, tmp_path):
    """Drawn parameters that no longer parse (here an unknown key in the first row) skip the
    figure with a reason naming the manifest and row; the other statistics are still written."""
    damaged = tmp_path / "damaged"
    shutil.copytree(dataset, damaged)
    manifest = damaged / "manifests" / "train.jsonl"
    lines = manifest.read_text().splitlines()
    row = json.loads(lines[0])
    row["params"]["x"] = 1
    manifest.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    stats = compute_stats(damaged, plots=False, progress=False, high_band=2)
    reason = stats["high_band"]["skipped"]
    assert reason.startswith(
        f"cannot re-render the examples ({manifest}: row {row['id']}: params.x"
    )
    assert stats["rows"]["train"] == len(lines)
