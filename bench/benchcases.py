"""Helpers shared by the bench/bench_*.py pytest-benchmark suites (imported as ``benchcases``)."""
import os

import pytest
import torch

BENCH_DEVICE = os.environ.get("FASTSPIKE_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
BENCH_QUICK = os.environ.get("FASTSPIKE_BENCH_QUICK", "0") not in ("", "0")
BENCH_PEERS = ("spikingjelly", "snntorch", "norse")


def _ctx():
    from fastspike.bench.registry import Ctx
    return Ctx(device=BENCH_DEVICE, peers=BENCH_PEERS, quick=BENCH_QUICK, suite="default")


def bench_case_params(family):
    """pytest.param(case_name, point, mode) for every available case of ``family``, with readable ids."""
    from fastspike.bench.cli import _load_cases
    from fastspike.bench.registry import CASES
    _load_cases()
    out = []
    for case in CASES.values():
        if case.family != family or case.available() is not None:
            continue
        for point in case.points(_ctx()):
            point = dict(point)
            for mode in point.pop("modes", case.modes):
                pid = f"{case.name}-{mode}-" + "-".join(f"{k}{v}" for k, v in point.items())
                out.append(pytest.param(case.name, point, mode, id=pid))
    return out


