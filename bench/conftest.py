"""pytest-benchmark suites over the cases of ``python -m fastspike.bench`` (``pytest bench/ --benchmark-only``).

* Files named ``bench_*.py`` in this folder are collected (pytest's default pattern is ``test_*.py``).
* ``benchcases.bench_case_params(family)`` lists (case, point, mode) for a family at the sizes the CLI would use
  (``FASTSPIKE_BENCH_QUICK=1`` for the quick sizes, ``FASTSPIKE_BENCH_DEVICE=cuda`` for the GPU).
* The ``run_impl`` fixture builds a case's implementations once per (case, point, mode), checks that every
  implementation agrees with fastspike (the same check as the CLI: a peer that computes something else is
  skipped with the mismatch as the reason, never timed), then benchmarks the requested implementation.
  Peers that are not installed are skipped with the pip command that installs them.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcases import BENCH_DEVICE, _ctx


def pytest_collect_file(file_path, parent):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):  # files named on the command line are collected anyway
        return pytest.Module.from_parent(parent, path=file_path)
    return None


class _Cache:
    key = None
    impls = None
    rows = None


@pytest.fixture
def run_impl(benchmark):
    """run_impl(case_name, point, mode, impl_name): check, then benchmark one implementation of a case."""
    from fastspike.bench.core import check_impls, sync
    from fastspike.bench.registry import CASES

    def go(case_name, point, mode, impl_name):
        case = CASES[case_name]
        key = (case_name, tuple(sorted(point.items())), mode)
        if _Cache.key != key:  # one case-size at a time in memory
            _Cache.key = _Cache.impls = _Cache.rows = None
            impls = case.setup(point, mode, _ctx())
            rows, _ = check_impls(impls, BENCH_DEVICE)
            _Cache.key, _Cache.impls, _Cache.rows = key, impls, rows
        impl = next((i for i in _Cache.impls if i.name == impl_name), None)
        if impl is None:
            pytest.skip(f"{impl_name}: not an implementation of {case_name}")
        row = _Cache.rows[impl_name]
        if row.status != "ok":
            pytest.skip(f"{impl_name}: {row.status}: {row.reason}")
        benchmark.group = f"{case_name} {mode} {case.label(point)}"
        benchmark.extra_info.update(case=case_name, mode=mode, impl=impl_name, **point)

        def call():
            impl.fn()
            sync(BENCH_DEVICE)
        benchmark(call)
    return go
