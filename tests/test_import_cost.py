"""What `import fastspike` pulls in. Triton launchers become ``torch.library.triton_op``s (Inductor sees their
kernels) only where a compiled Triton kernel could ever run: a torch built for CUDA or ROCm, without
TRITON_INTERPRET. Everywhere else they are opaque custom ops, and importing fastspike does not import Inductor,
Dynamo or Triton (triton_op's kernel discovery imports Inductor: about a second of a CPU user's import).
Each case runs in a fresh interpreter, since the registration happens once per process."""
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, sys
import torch
if sys.argv[1] == "gpu":
    torch.version.cuda = "12.8"  # what a CUDA build reports; nothing below touches a device
import fastspike
from fastspike.ops import _backend
from torch._library import triton as tl
ours = sorted(n for n in tl.triton_ops_to_kernels if n.startswith("fastspike::"))
triton_named = sorted(f"fastspike::{n}" for n in dir(torch.ops.fastspike) if "triton" in n)
print(json.dumps({"gpu_build": _backend.gpu_build(), "triton_ops": ours, "triton_named": triton_named,
                  "modules": [m for m in ("torch._inductor", "torch._dynamo", "triton") if m in sys.modules]}))
"""


def _probe(kind: str, interpret: str) -> dict:
    env = dict(os.environ, TRITON_INTERPRET=interpret)
    p = subprocess.run([sys.executable, "-c", _PROBE, kind], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(__import__("torch").version.cuda is not None, reason="a torch built without CUDA")
def test_cpu_build_registers_custom_ops_and_imports_no_compiler():
    out = _probe("cpu", "0")
    assert out["gpu_build"] is False
    assert out["triton_ops"] == []
    assert len(out["triton_named"]) >= 10  # the Triton launchers are registered, as custom ops
    assert out["modules"] == []


def test_gpu_build_registers_every_triton_launcher_as_a_triton_op():
    pytest.importorskip("triton")
    out = _probe("gpu", "0")
    assert out["gpu_build"] is True
    # every op whose name says Triton (forward and backward of each) is a triton_op
    assert out["triton_ops"] == out["triton_named"] and len(out["triton_ops"]) >= 10


def test_interpreter_registers_custom_ops():
    pytest.importorskip("triton")
    out = _probe("gpu", "1")
    assert out["triton_ops"] == []
    assert len(out["triton_named"]) >= 10
