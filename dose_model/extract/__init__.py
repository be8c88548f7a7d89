"""`dose-extract`: one-shots out of songs.

- `extractor`: `Extractor` (`ExtractOptions`, `load_extractor`), songs' windows through the
  codec and the decoder.
- `shaping`: level, trim and fade of a one-shot.  `songs`: finding songs, reading them, picking windows.
"""
