"""DOSE: drum one-shot extraction with a DAC-token decoder-only transformer.

`dose_model` reads what `rmod` writes (manifests + audio) through the documented
manifest format; it never imports `rmod`.
"""

__version__ = "0.1.0"

DRUMS = ("kick", "snare", "hihat")
