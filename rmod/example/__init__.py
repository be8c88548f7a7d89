"""One RMOD example, stage by stage: draw every random choice, then render from the draws.

- `draw`: seeding, `ExampleParams` and `draw_example` (the only place that draws).
- `render`: `render_example`, from the drawn records to audio (draws nothing).
- `pattern`, `groove`: drum patterns (random grid points, or windows of MIDI files).
- `tracks`: layered one-shots into dry drum tracks; instrument loops into dry tracks.
- `mixing`: per-track chains and the delay/reverb buses.  `master`: the master chain.
- `sample_store`, `pitch`: library audio decoded and pitch-shifted once per build, read in slices.
"""
