"""The DAC codec and the token layout.

- `dac_network`: the DAC network in the released weights' layout.
- `dac_codec`: `DacCodec`, loading and running it.  `tokens`: codes, offsets and the delay pattern.
"""
