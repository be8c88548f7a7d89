"""Inspecting one example: level measurements and the ``overview.png`` figure.

:func:`contribution_db` says how loud each track is in the mix: the RMS of the track
after its chain relative to the RMS of the sum of all tracks (both before mastering,
whose gain is common to all tracks), in dB. ``drums`` is the three drum tracks summed.
The paper-recipe defaults keep every drum class audible; the documented range the
defaults satisfy is :data:`DRUM_CONTRIBUTION_RANGE_DB` (checked by the tests and
reported by ``rmod-render-one``).

:func:`plot_overview` draws the mixture's waveform and spectrogram with each class's
onsets marked, the three target one-shots, and a table of the main parameters
(matplotlib, Agg backend, no display needed).
"""

from __future__ import annotations

import io
import os
from typing import Any, cast

import numpy as np

from rmod import DRUMS
from rmod.audio import rms_db
from rmod_dose_common.fileio import atomic_write_bytes

#: Range (dB) that the drum tracks' contribution to the pre-master mix stays within with
#: the default recipes: (low, high) for each single drum class and for all drums together.
DRUM_CONTRIBUTION_RANGE_DB = {"class": (-24.0, 0.0), "drums": (-12.0, 0.5)}
#: Lowest median onset-window ratio (dB, see :func:`onset_snr_db`) of any drum class that
#: the default recipes give; below this a class would be buried at its own onsets.
ONSET_SNR_MIN_DB = -12.0
ONSET_WINDOW_MS = 50.0

CLASS_COLORS = {"kick": "tab:red", "snare": "tab:blue", "hihat": "tab:green"}


def premaster_mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    """Sum of the processed track stems (``*_dry`` stems excluded), ``[2, n]``."""
    names = [k for k in stems if not k.endswith("_dry")]
    # a sum over axis 0 of [2, n] arrays is an array (numpy's stubs allow a scalar)
    return cast(np.ndarray, np.sum([stems[k] for k in names], axis=0, dtype=np.float64))


def contribution_db(stems: dict[str, np.ndarray]) -> dict[str, float]:
    """RMS of each track (and of all drums together) relative to the pre-master mix, dB."""
    mix_db = rms_db(premaster_mix(stems))
    out = {k: rms_db(v) - mix_db for k, v in stems.items() if not k.endswith("_dry")}
    drums = [stems[c] for c in DRUMS if c in stems]
    if drums:
        drum_sum = cast(np.ndarray, np.sum(drums, axis=0, dtype=np.float64))  # an array, as above
        out["drums"] = rms_db(drum_sum) - mix_db
    return out


def onset_snr_db(
    stems: dict[str, np.ndarray],
    onsets: dict[str, np.ndarray],
    sample_rate: int,
    window_ms: float = ONSET_WINDOW_MS,
) -> dict[str, float]:
    """Per drum class: median over its hits of the RMS ratio (dB) between the class's
    track and everything else in the pre-master mix, in the ``window_ms`` after each onset.

    Positive means the hit stands out over the rest of the music at its own onset;
    ``inf`` means nothing else plays there.
    """
    mix = premaster_mix(stems)
    w = max(1, int(round(window_ms * sample_rate / 1000.0)))
    out = {}
    for cls, positions in onsets.items():
        ratios = []
        for pos in positions:
            seg = slice(int(pos), int(pos) + w)
            own = stems[cls][:, seg].astype(np.float64)
            ratios.append(rms_db(own) - rms_db(mix[:, seg] - own))
        out[cls] = float(np.median(ratios)) if ratios else float("nan")
    return out


def _table_rows(params: Any, levels: dict[str, float]) -> tuple[list[str], list[list[str]]]:
    header = [
        "track",
        "source(s)",
        "what",
        "level dB",
        "gain",
        "pan",
        "comp thr/ratio",
        "limit",
        "delay",
        "reverb",
    ]
    rows = []
    for name in list(params.drums) + list(params.instruments):
        if name in params.drums:
            d = params.drums[name]
            src = " + ".join(i.split("/")[-1][:8] for i in d.sample_ids)
            what = f"{len(d.grid)} hits, w={d.weights[0]:.1f}/{d.weights[1]:.1f}"
        else:
            inst = params.instruments[name]
            if not inst.plays:
                reason = "dropped" if inst.dropped else "no loops in split"
                rows.append([name, "-", reason] + ["-"] * 7)
                continue
            src = inst.loop_id.split("/")[-1][:8]
            what = f"{inst.segment_seconds:g} s seg, {inst.semitones:+d} st"
        m = params.mix[name]
        delay = f"{m.delay_send_db:.0f} dB" if params.buses.delay.active else "off"
        reverb = f"{m.reverb_send_db:.0f} dB" if params.buses.reverb.active else "off"
        rows.append(
            [
                name,
                src,
                what,
                f"{levels.get(name, float('nan')):.1f}",
                f"{m.gain_db:+.1f}",
                f"{m.pan:+.2f}",
                f"{m.compressor.threshold_db:.0f}/{m.compressor.ratio:.1f}",
                f"{m.limiter.threshold_db:.1f}",
                delay,
                reverb,
            ]
        )
    return header, rows


def plot_overview(
    path: str | os.PathLike, params: Any, rendered: Any, title: str | None = None
) -> None:
    """Write ``overview.png`` for one example (atomically). See the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = contribution_db(rendered.stems)
    fig = plt.figure(figsize=(14, 11), dpi=80)
    grid = fig.add_gridspec(4, 3, height_ratios=[1.0, 1.3, 0.9, 1.1], hspace=0.45)
    _plot_mixture(fig, grid, rendered)
    for k, cls in enumerate(DRUMS):
        ax = fig.add_subplot(grid[2, k])
        shot = rendered.oneshots[cls].mean(axis=0)
        ax.plot(np.arange(shot.size) / rendered.sample_rate, shot, lw=0.4, color=CLASS_COLORS[cls])
        ax.set_ylim(-1, 1)
        ax.set_title(f"{cls} target ({levels.get(cls, float('nan')):.1f} dB in mix)", fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
    _plot_table(fig.add_subplot(grid[3, :]), *_table_rows(params, levels))
    fig.suptitle(
        title
        or f"{params.id}  seed {params.seed}  drums {levels.get('drums', float('nan')):.1f} dB in mix",
        fontsize=12,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _plot_mixture(fig: Any, grid: Any, rendered: Any) -> None:
    """The mixture's waveform and spectrogram (top two rows), each drum's onsets marked."""
    sr = rendered.sample_rate
    mono = rendered.mixture.mean(axis=0)
    t = np.arange(mono.size) / sr
    ax_w = fig.add_subplot(grid[0, :])
    ax_w.plot(t, mono, lw=0.4, color="0.25")
    ax_w.set_xlim(0, t[-1] if t.size else 1)
    ax_w.set_ylim(-1, 1)
    ax_w.set_ylabel("mixture")
    ax_s = fig.add_subplot(grid[1, :], sharex=ax_w)
    spec, _, _, image = ax_s.specgram(
        mono + 1e-9, NFFT=2048, Fs=sr, noverlap=1536, cmap="magma", scale="dB"
    )
    top = 10.0 * np.log10(max(float(spec.max()), 1e-20))
    image.set_clim(top - 80.0, top)
    ax_s.set_ylim(0, min(16000, sr / 2))
    ax_s.set_ylabel("Hz")
    ax_s.set_xlabel("seconds")
    for k, cls in enumerate(DRUMS):
        times = rendered.onsets[cls] / sr if cls in rendered.onsets else ()
        for ax in (ax_w, ax_s):
            ymin, ymax = (0.0, 1.0) if ax is ax_w else (0.92 - 0.04 * k, 0.96 - 0.04 * k)
            for j, x in enumerate(times):
                label = cls if (ax is ax_w and j == 0) else None
                ax.axvline(
                    x, ymin=ymin, ymax=ymax, color=CLASS_COLORS[cls], lw=0.9, alpha=0.8, label=label
                )
    ax_w.legend(loc="upper right", fontsize=8, ncol=3)


def _plot_table(ax: Any, header: list[str], rows: list[list[str]]) -> None:
    """The drawn parameters per track as a table (bottom row)."""
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))  # no cell text cut off
    table.scale(1.0, 1.25)
