"""rmod_dose_common.records: one walker, two ways to read (build for rmod, check for
dose_model); each package's own behaviour is tested in tests/rmod/test_records.py and
tests/dose_model/test_dose_records.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

import rmod.records
from rmod_dose_common.records import (
    RecordError,
    check_plain,
    from_plain,
    plain_problem,
    to_plain,
)


@dataclass(frozen=True)
class _Run:
    rates: tuple[int, ...] = (2, 4)
    dropout: float | bool = False
    best: float = math.inf
    state: dict[str, Any] = field(default_factory=dict)


def test_build_converts_and_check_keeps_values_as_given():
    plain = {"rates": [8, 8], "dropout": 0, "best": 1}
    built = from_plain(_Run, plain)
    assert built == _Run((8, 8), 0.0, 1.0) and isinstance(built.best, float)
    assert plain_problem(_Run, plain, "run") == "run.rates must be tuple[int, ...], got [8, 8]"
    kept = check_plain(_Run, {**plain, "rates": (8, 8)}, "run")
    assert kept.rates == (8, 8) and type(kept.best) is int  # not converted


def test_unions_take_the_first_arm_that_fits_in_both_ways():
    assert from_plain(_Run, {"dropout": True}).dropout is True
    assert from_plain(_Run, {"dropout": 0.5}).dropout == 0.5
    with pytest.raises(RecordError, match=r"^dropout: expected true/false, got str 'x'"):
        from_plain(_Run, {"dropout": "x"})
    assert plain_problem(_Run, {"dropout": "x"}, "r") == "r.dropout must be float | bool, got 'x'"


def test_an_infinite_default_may_stay_infinite_elsewhere_none_is_a_number():
    assert from_plain(_Run, {"best": -math.inf}).best == -math.inf
    assert plain_problem(_Run, {"best": math.inf}, "r") is None
    assert plain_problem(_Run, {"rates": (1, 2), "state": {"a": math.nan}}, "r") is None  # Any
    with pytest.raises(RecordError, match="number out of range"):
        from_plain(_Run, {"best": 10**400})


def test_the_error_class_is_the_callers():
    class Mine(Exception):
        def __init__(self, where: str, reason: str):
            super().__init__(f"{where} / {reason}")

    with pytest.raises(Mine, match="^rates\\[1\\] / expected an integer"):
        from_plain(_Run, {"rates": [1, "2"]}, error=Mine)
    with pytest.raises(KeyError, match="r has no 'rates'"):
        check_plain(_Run, {}, "r", KeyError, require_all=True)
    with pytest.raises(rmod.records.RecordError) as err:  # rmod's: an RmodError, a ValueError
        rmod.records.from_plain(_Run, {"rates": "12"}, "top")
    assert isinstance(err.value, RecordError) and err.value.where == "top.rates"


def test_shallow_plain_form_keeps_what_fields_hold():
    state = {"betas": (0.9, 0.99)}
    run = _Run(state=state)
    assert to_plain(run)["state"] == {"betas": [0.9, 0.99]}
    assert to_plain(run, deep=False)["state"] is state
