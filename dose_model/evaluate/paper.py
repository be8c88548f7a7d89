"""The published Table I of the DOSE paper, as numbers (RMOD test sets; lower is better).

Keys are ``(dataset, system, metric, drum)`` in the paper's own names; `paper_dataset` maps a
user's dataset name onto one of them. Values are as printed (including the snare entry
"4.2619" of the RMOD ablation row).
"""

from __future__ import annotations

DATASETS = ("RMOD", "RMOD (drum only)", "Groove MIDI Dataset")
SYSTEMS = ("Reconstruction", "LarsNet", "DOSE (w/o onset loss)", "DOSE")
METRICS = ("MSS", "FAD_vgg", "FAD_clap")
DRUMS = ("kick", "snare", "hihat")

# dataset -> system -> nine values: MSS kick/snare/hihat, FAD_vgg k/s/h, FAD_clap k/s/h
_ROWS = {
    "RMOD": {
        "Reconstruction": (1.832, 1.880, 1.530, 0.207, 0.360, 0.621, 0.133, 0.131, 0.135),
        "LarsNet": (5.153, 6.191, 5.840, 4.414, 6.641, 3.004, 1.119, 1.361, 1.158),
        "DOSE (w/o onset loss)": (4.435, 4.2619, 3.767, 1.153, 1.566, 1.105, 0.487, 0.718, 0.470),
        "DOSE": (3.700, 4.135, 2.056, 0.920, 0.671, 0.238, 0.439, 0.636, 0.324),
    },
    "RMOD (drum only)": {
        "Reconstruction": (1.832, 1.880, 1.530, 0.207, 0.360, 0.621, 0.133, 0.131, 0.135),
        "LarsNet": (4.841, 5.932, 5.695, 2.738, 5.553, 2.503, 0.887, 1.207, 1.028),
        "DOSE (w/o onset loss)": (4.518, 4.316, 3.793, 2.409, 1.649, 0.937, 0.497, 0.706, 0.448),
        "DOSE": (3.708, 3.966, 1.972, 0.978, 0.705, 0.217, 0.435, 0.605, 0.301),
    },
    "Groove MIDI Dataset": {
        "Reconstruction": (2.243, 1.461, 1.476, 2.364, 3.276, 1.935, 0.236, 0.306, 0.234),
        "LarsNet": (5.079, 4.411, 4.752, 4.674, 3.286, 2.467, 1.259, 1.098, 1.309),
        "DOSE (w/o onset loss)": (3.606, 4.041, 3.356, 3.453, 3.799, 4.491, 0.690, 1.170, 0.624),
        "DOSE": (3.347, 3.984, 3.631, 3.369, 1.819, 5.152, 0.655, 1.089, 0.933),
    },
}

TABLE_I: dict[tuple[str, str, str, str], float] = {
    (dataset, system, metric, drum): values[3 * m + d]
    for dataset, systems in _ROWS.items()
    for system, values in systems.items()
    for m, metric in enumerate(METRICS)
    for d, drum in enumerate(DRUMS)
}


def paper_dataset(name: str) -> str | None:
    """The paper's dataset a user's dataset name stands for: a name containing "groove" is
    the Groove MIDI Dataset, one containing "drum" RMOD (drum only), one containing "rmod"
    RMOD; None for any other name (case-insensitive)."""
    low = name.lower()
    if "groove" in low:
        return "Groove MIDI Dataset"
    if "drum" in low:
        return "RMOD (drum only)"
    if "rmod" in low:
        return "RMOD"
    return None


def paper_values(
    datasets: dict[str, str | None], systems: dict[str, str | None]
) -> dict[tuple[str, str, str, str], float]:
    """The paper's values under our keys: ``datasets`` and ``systems`` map our names to the
    paper's (None: not in the paper)."""
    out = {}
    for ours_d, paper_d in datasets.items():
        for ours_s, paper_s in systems.items():
            if paper_d is None or paper_s is None:
                continue
            for metric in METRICS:
                for drum in DRUMS:
                    out[(ours_d, ours_s, metric, drum)] = TABLE_I[(paper_d, paper_s, metric, drum)]
    return out
