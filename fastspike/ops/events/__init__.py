"""Event streams binned into frames: the C++ launcher of csrc/events.cpp (``cpu.integrate``).

This is a data-pipeline kernel, not a differentiable tensor op: it reads a numpy structured array of events and
writes a numpy frame array, so it has no autograd formula, no custom-op registration and no Triton kernel (the
datasets run it in loader workers on the CPU). Its reference and the public function are
``fastspike.datasets.frames`` (the numpy path and ``to_frames``), whose tests compare the two.
"""
from . import cpu

__all__ = ["cpu"]
