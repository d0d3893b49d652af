"""fastspike's side-by-side benchmark suite (``python -m fastspike.bench``; docs/bench.md).

Case modules live in ``fastspike.bench.cases`` and register themselves; :mod:`.core` times, checks and
measures; :mod:`.report` prints, writes JSON and plots. ``run(argv)`` is the command line as a function.
"""
from .cli import run
from .core import Impl, Row, Settings, Table, compare_outputs, measure_table
from .registry import CASES, PEERS, Case, Ctx, register

__all__ = ["run", "Impl", "Row", "Settings", "Table", "compare_outputs", "measure_table", "CASES", "PEERS",
           "Case", "Ctx", "register"]
