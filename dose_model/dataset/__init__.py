"""RMOD datasets as the model reads them, through the documented format only (never `rmod`).

- `manifest`: manifest rows, ids and containment.  `audio`: audio as the model reads it.
- `members`: files of a ``--layout tar`` build, members of its tar shards.
"""
