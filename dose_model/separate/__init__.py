"""Drum separation baselines: LarsNet from its released checkpoint folder.

`load_larsnet` reads ``{stem}/pretrained_{stem}_unet.pth`` for LarsNet's five stems
(`STEMS`); `LarsNet.separate` gives stereo 44.1 kHz stems with LarsNet's plain masks or its
alpha-Wiener masks (:mod:`dose_model.separate.larsnet`).
:mod:`dose_model.separate.songs` (not imported here: it loads the song finder of
`dose_model.extract.songs`) runs it over audio files and writes one WAV per stem; `dose-separate`
calls it.
"""

from dose_model.separate.larsnet import (
    DRUM_STEMS,
    SAMPLE_RATE,
    STEMS,
    LarsNet,
    LarsNetError,
    checkpoint_path,
    load_larsnet,
    load_unet,
)
from dose_model.separate.unet import MaskUNet, widths_from_state_dict

__all__ = [
    "DRUM_STEMS",
    "SAMPLE_RATE",
    "STEMS",
    "LarsNet",
    "LarsNetError",
    "MaskUNet",
    "checkpoint_path",
    "load_larsnet",
    "load_unet",
    "widths_from_state_dict",
]
