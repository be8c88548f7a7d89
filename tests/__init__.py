"""The test suite; its shared helpers live in the modules beside this one."""

from __future__ import annotations

import os

import pytest


def skip_unless_ci(reason: str) -> None:
    """Skip the test for something this machine lacks, but fail it when ``CI`` is set:
    ``.ci/run`` installs everything the tests need, so a lack there is a broken install."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip")
    pytest.skip(reason)
