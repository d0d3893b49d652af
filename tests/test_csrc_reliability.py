"""The C++ kernels after an out-of-memory: a std::bad_alloc becomes MemoryError and every later call still works.

csrc/registry.h keeps per-kernel scratch buffers across calls; a failed allocation used to leave the buffer freed
with its old capacity recorded, so the next call of a size that fit wrote through a null pointer (segfault), and an
allocation failing inside an OpenMP region terminated the process. The scenario runs in a subprocess under an
address-space limit (RLIMIT_AS), so a crash fails the test instead of killing the run.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from fastspike import _ext

pytestmark = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")

# Runs in a fresh interpreter: warms up every scratch-using kernel, makes each kind of scratch allocation fail under
# an address-space limit, lifts the limit, then checks every kernel against torch again.
SCENARIO = textwrap.dedent(r"""
    import resource
    import sys

    import torch
    import torch.nn.functional as F

    from fastspike import ops

    torch.manual_seed(0)
    torch.set_num_threads(2)  # per-thread buffers on two threads
    MB = 1 << 20


    def close(name, ref, out):
        err = float((ref.double() - out.double()).norm() / ref.double().norm().clamp_min(1e-30))
        assert err < 1e-5, f"{name}: relative error {err:.3g}"


    def spikes(shape, density):
        return (torch.rand(shape) < density).float()


    def every_kernel():
        # Linear: cached blocked weight (no grad), and a weight being trained (blocked into scratch memory by the
        # kernel) with its event-driven weight gradient
        x = spikes((67, 301), 0.1)
        w = torch.randn(133, 301)
        b = torch.randn(133)
        with torch.no_grad():
            close("linear", F.linear(x, w, b), ops.synapse_linear(x, w, b, event_driven=True, backend="cpp"))
        wg = w.clone().requires_grad_()
        y = ops.synapse_linear(x, wg, b, event_driven=True, backend="cpp")
        close("linear trained", F.linear(x, w, b), y.detach())
        g = torch.randn_like(y)
        (gw,) = torch.autograd.grad(y, wg, g)
        close("linear grad_w", g.t() @ x, gw)
        # Conv2d: the register-blocked path (groups 1, Cout % 16 == 0), the grouped path, a weight being trained
        # (transposed into scratch memory) and the event-driven weight gradient
        xc = spikes((3, 32, 13, 11), 0.2)
        for groups, cout in ((1, 32), (4, 12)):
            wc = torch.randn(cout, 32 // groups, 3, 3)
            bc = torch.randn(cout)
            kw = dict(padding=1, groups=groups)
            with torch.no_grad():
                close(f"conv g{groups}", F.conv2d(xc, wc, bc, **kw),
                      ops.synapse_conv2d(xc, wc, bc, event_driven=True, backend="cpp", **kw))
            wcg = wc.clone().requires_grad_()
            yc = ops.synapse_conv2d(xc, wcg, bc, event_driven=True, backend="cpp", **kw)
            close(f"conv trained g{groups}", F.conv2d(xc, wc, bc, **kw), yc.detach())
            gc = torch.randn_like(yc)
            (gwc,) = torch.autograd.grad(yc, wcg, gc)
            close(f"conv grad_w g{groups}", torch.nn.grad.conv2d_weight(xc, wc.shape, gc, **kw), gwc)


    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")


    def out_of_memory(name, fn, headroom):
        # the big operands exist already: only the kernel's own allocations meet the limit
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom, hard))
        try:
            fn()
        except MemoryError:
            print(f"{name}: MemoryError", flush=True)
        else:
            sys.exit(f"{name}: expected MemoryError, the call succeeded")
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


    every_kernel()  # every scratch buffer now has a capacity

    # conv2d forward, buffers of the calling thread: the per-pixel tables of a 16384 x 16384 map (1 GiB each)
    big = torch.zeros(1, 1, 16384, 16384)
    w1 = torch.randn(16, 1, 3, 3)
    out_of_memory("conv2d forward (calling thread)",
                  lambda: ops.synapse_conv2d(big, w1, padding=1, event_driven=True, backend="cpp"), 256 * MB)
    del big
    every_kernel()

    # conv2d forward, per-thread buffers: the channel lists of a 2048-channel input (128 MiB each thread)
    wide = torch.zeros(1, 2048, 128, 128)
    w2 = torch.randn(16, 2048, 1, 1)
    out_of_memory("conv2d forward (per-thread lists)",
                  lambda: ops.synapse_conv2d(wide, w2, event_driven=True, backend="cpp"), 64 * MB)
    del wide
    every_kernel()

    # linear forward, per-thread lists growing inside the parallel region: all-ones rows (one index per element)
    ones = torch.ones(8192, 4096)
    w3 = torch.randn(16, 4096)
    with torch.no_grad():
        out_of_memory("linear forward (per-thread lists)",
                      lambda: ops.synapse_linear(ones, w3, event_driven=True, backend="cpp"), 64 * MB)
    del ones
    every_kernel()

    # linear forward of a weight being trained: the blocked copy (512 MiB) in the calling thread's scratch memory
    wbig = torch.zeros(16384, 8192, requires_grad=True)
    xs = spikes((4, 8192), 0.01)
    out_of_memory("linear forward (blocked weight)",
                  lambda: ops.synapse_linear(xs, wbig, event_driven=True, backend="cpp"), 256 * MB)
    del wbig
    every_kernel()

    # conv2d weight gradient: the transposed upstream gradient (512 MiB) in the calling thread's scratch memory
    xg = spikes((32, 4, 64, 64), 0.05)
    wg = torch.randn(1024, 4, 3, 3, requires_grad=True)
    yg = ops.synapse_conv2d(xg, wg, padding=1, event_driven=True, backend="cpp")
    gg = torch.ones_like(yg)
    out_of_memory("conv2d weight gradient", lambda: torch.autograd.grad(yg, wg, gg), 256 * MB)
    del xg, wg, yg, gg
    every_kernel()
    print("every kernel right after each out-of-memory", flush=True)
""")


def test_scratch_memory_survives_bad_alloc():
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", SCENARIO], env=env, capture_output=True, text=True, timeout=600,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    report = f"exit status {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    assert r.returncode == 0, report  # a segfault is -11, an abort (exception out of an OpenMP region) -6
    for name in ("conv2d forward (calling thread)", "conv2d forward (per-thread lists)",
                 "linear forward (per-thread lists)", "linear forward (blocked weight)", "conv2d weight gradient"):
        assert f"{name}: MemoryError" in r.stdout, report
    assert "every kernel right after each out-of-memory" in r.stdout, report
