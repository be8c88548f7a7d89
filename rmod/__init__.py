"""RMOD: the Random Mixture One-shot Dataset builder.

Data flow (one module per stage):
    library -> pattern -> layering/tracks -> mixing -> master -> files + manifest row
"""

__version__ = "0.1.0"

DRUMS = ("kick", "snare", "hihat")
INSTRUMENTS = ("bass", "piano", "guitar", "vocal")
CLASSES = DRUMS + INSTRUMENTS
SPLITS = ("train", "valid", "test")
