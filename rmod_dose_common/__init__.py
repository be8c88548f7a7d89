"""What `rmod` and `dose_model` both need, in one copy; imports neither of them.

- `cli`: how every command-line tool ends (exit statuses, `--debug`, the help formatter).
- `audio`: the one bounded audio reader (regular files only, header limits, block decoding).
"""
