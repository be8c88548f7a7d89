"""What `rmod` and `dose_model` both need, in one copy; imports neither of them.

- `cli`: how every command-line tool ends (exit statuses, `--debug`, the help formatter).
- `pcm`: 16-bit quantization (`to_pcm16`) and its float read-back, for audio files and tokens.
"""
