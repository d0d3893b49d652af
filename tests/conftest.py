"""Test setup shared by every test file.

* Triton kernels run on the CPU through the interpreter (TRITON_INTERPRET=1) when no GPU is present;
  the variable must be set before triton is imported anywhere.
* Fresh outputs are filled with NaN (torch.empty* patched inside fastspike's launchers' modules via
  the `nan_empty` fixture) so an element a kernel forgets to write fails the comparison.
"""
import os

if not os.environ.get("CUDA_VISIBLE_DEVICES") and "TRITON_INTERPRET" not in os.environ:
    try:
        import torch as _torch

        if not _torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
    except ImportError:
        pass

import pytest
import torch

_real_empty = torch.empty
_real_empty_like = torch.empty_like

try:  # torch.compile resolves torch functions by name once per process (e.g. "torch.empty" -> the builtin): resolve
    # them now, before `nan_empty` patches torch.empty, or a file whose first compilation runs under the patch
    # would see the patch's lambda as torch.empty and break the graph at every real torch.empty
    from torch._dynamo.trace_rules import get_torch_obj_rule_map

    get_torch_obj_rule_map()
except ImportError:  # another torch: its tracing rules are resolved wherever they are
    pass


def _nan_fill(t):
    if t.device.type == "meta":
        return t
    with torch.no_grad():  # torch.empty(..., requires_grad=True) is a leaf: fill it as data, not as an op
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8):
            t.fill_(123)  # any garbage value that a correct kernel overwrites
    return t


@pytest.fixture(autouse=True)
def nan_empty(monkeypatch):
    """Every torch.empty / empty_like inside the test returns NaN-filled memory."""
    monkeypatch.setattr(torch, "empty", lambda *a, **k: _nan_fill(_real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: _nan_fill(_real_empty_like(*a, **k)))
    try:  # large CPU outputs come from fastspike's block cache (ops/_alloc.py), not torch.empty
        from fastspike.ops import _alloc
    except ImportError:
        _alloc = None
    if _alloc is not None:
        from_cache = _alloc._from_cache
        monkeypatch.setattr(_alloc, "_from_cache", lambda shape, dtype: _nan_fill(from_cache(shape, dtype)))
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
