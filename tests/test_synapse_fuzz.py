"""Random configurations of the synapse and max-pooling ops against torch (tools/fuzz_synapse.py, issue 18): a
bounded run in CI, in a subprocess so that a crash of the process fails this test instead of the whole run.
Longer campaigns: ``python tools/fuzz_synapse.py --n 1600 --seed S``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import triton_runs_here

ROOT = Path(__file__).resolve().parents[1]


def _campaign(n: int, seed: int, backends: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_synapse.py"), "--n", str(n), "--seed",
                           str(seed), "--backends", backends], capture_output=True, text=True, timeout=600, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, (f"campaign failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                                  f"{proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    assert summary["cases"] == n
    return summary["outcomes"]


def test_random_configurations_match_torch_on_cpp_and_torch():
    outcomes = _campaign(600, 0, "cpp,torch")
    assert not any(k.startswith("FINDING") for k in outcomes), outcomes
    assert outcomes.get("equal to torch", 0) > 300  # the campaign mostly compares, not refuses


@pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")
def test_random_configurations_match_torch_on_triton():
    outcomes = _campaign(100, 1, "triton")
    assert not any(k.startswith("FINDING") for k in outcomes), outcomes
    assert outcomes.get("equal to torch", 0) > 30
