"""The event-driven Linear forward's blocking (csrc/linear.cpp): rows in blocks of up to 1024 sharing one pass over
a tile's weight panel, walked 512 inputs at a time when the panel exceeds half the L2 (FASTSPIKE_L2_BYTES forces
that path here). Shapes that cut every block short (K past one slice and not a
multiple of it, M past one row block, N past one 64-output tile) against F.linear."""
import pytest
import torch
import torch.nn.functional as F

from fastspike import _ext
from fastspike.ops import synapse as S
from helpers import TOL, assert_close

pytestmark = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")


@pytest.mark.parametrize("density", [0.01, 0.2, 1.0], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("M, K, N", [(1100, 1500, 200), (3, 2049, 64), (1025, 512, 65)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("l2", ["machine", "64KiB"])
def test_blocked_linear_forward_matches_f_linear(M, K, N, density, l2, monkeypatch):
    if l2 == "64KiB":  # panels past half the L2 are walked in slices: take that path whatever this machine's L2
        monkeypatch.setenv("FASTSPIKE_L2_BYTES", str(64 << 10))
    torch.manual_seed(M + K + N)
    x = (torch.rand(M, K) < density).float()
    w = torch.randn(N, K) / K ** 0.5
    b = torch.randn(N)
    with torch.no_grad():  # the cached tile-blocked weight
        assert_close("cached weight", F.linear(x, w, b), S.synapse_linear(x, w, b, event_driven=True, backend="cpp"),
                     TOL[torch.float32])
    wg = w.clone().requires_grad_()  # a weight being trained: the kernel blocks it itself
    y = S.synapse_linear(x, wg, b, event_driven=True, backend="cpp")
    assert_close("trained weight", F.linear(x, w, b), y.detach(), TOL[torch.float32])
    g = torch.randn_like(y)
    assert_close("grad_w", g.t() @ x, torch.autograd.grad(y, wg, g)[0], TOL[torch.float32])
