"""The shared argument checks (fastspike/ops/_validate.py): their cheap first paths for plain ints, tuples of ints,
strings and bools give what the general path gives, and everything else is judged by the general path."""
import numpy as np
import pytest
import torch

from fastspike.ops import _validate as V


@pytest.mark.parametrize("value,minimum,want", [
    (2, 1, (2, 2)), ((1, 3), 1, (1, 3)), ([1, 3], 1, (1, 3)), (torch.Size([2, 2]), 0, (2, 2)),
    (np.int64(2), 1, (2, 2)), ((np.int64(1), 2), 1, (1, 2)), ((0, 0), 0, (0, 0)), (5, None, (5, 5)),
    ((-1, 4), None, (-1, 4)),
    (0, 1, ">= 1"), ((1, 0), 1, ">= 1"), (-1, 0, ">= 0"), (True, 1, "an int or a pair"),
    ((True, 1), 1, "an int or a pair"), ((1, 2, 3), 1, "an int or a pair"), ((1,), 1, "an int or a pair"),
    ((1.0, 2), 1, "an int or a pair"), ("1", 1, "an int or a pair"), (None, 1, "an int or a pair"),
])
def test_pair(value, minimum, want):
    if isinstance(want, str):
        with pytest.raises(ValueError, match=want):
            V.pair("op", "stride", value, minimum=minimum)
        return
    got = V.pair("op", "stride", value, minimum=minimum)
    assert got == want and type(got) is tuple and all(type(v) is int for v in got)


@pytest.mark.parametrize("value,ok", [(1, True), (3, True), (np.int32(2), True), (0, False), (-2, False),
                                      (True, False), (2.0, False), ("2", False)])
def test_positive_int(value, ok):
    if ok:
        got = V.positive_int("op", "groups", value)
        assert got == value and type(got) is int
    else:
        with pytest.raises(ValueError, match="groups must be a positive int"):
            V.positive_int("op", "groups", value)


@pytest.mark.parametrize("value,ok", [("auto", True), (True, True), (False, True), ("AUTO", False), (1, False),
                                      (0, False), (None, False), (1.0, False), ("", False)])
def test_choice_compares_bools_by_identity(value, ok):
    choices = ("auto", True, False)
    if ok:
        V.choice("op", "event_driven", value, choices)
    else:
        with pytest.raises(ValueError, match="event_driven must be one of 'auto', True, False"):
            V.choice("op", "event_driven", value, choices)
    V.choice("op", "n", 1, (0, 1))  # ints against ints: by value
    for bad in (True, "1"):  # a bool is not 1, a string not a number
        with pytest.raises(ValueError):
            V.choice("op", "n", bad, (0, 1))
