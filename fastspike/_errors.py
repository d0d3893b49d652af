"""Exception types for arguments SpikingJelly 2.0.0 rejects with ``assert`` or ``NotImplementedError``.

fastspike reports bad arguments with a ``ValueError`` whose message names the argument. Where SpikingJelly
raises ``AssertionError`` (an ``assert`` in a constructor) or ``NotImplementedError`` (an unknown option),
code written for SpikingJelly may catch that type; these classes are both, so either ``except`` clause works.
"""
from __future__ import annotations

__all__ = ["ArgumentError", "UnsupportedOptionError"]


class ArgumentError(ValueError, AssertionError):
    """A bad argument where SpikingJelly 2.0.0 asserts: catchable as ValueError and as AssertionError."""


class UnsupportedOptionError(ValueError, NotImplementedError):
    """An unknown option where SpikingJelly 2.0.0 raises NotImplementedError: catchable as either."""
