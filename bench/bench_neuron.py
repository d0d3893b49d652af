"""pytest-benchmark suite: multi-step IF / LIF / ParametricLIF, forward+backward and forward only, fastspike
(module and kernels alone), SpikingJelly, snnTorch, Norse and the memcpy floor, at the sizes of
``python -m fastspike.bench`` (same cases, same agreement check; see fastspike/bench/cases/neuron.py).

    pytest bench/bench_neuron.py --benchmark-only -p no:cacheprovider
    FASTSPIKE_BENCH_QUICK=1 pytest bench/bench_neuron.py --benchmark-only      # small sizes
    pytest bench/bench_neuron.py --benchmark-only -k "lif and train and fastspike"
"""
import pytest

from benchcases import bench_case_params

IMPLS = ["fastspike", "fastspike kernels (prealloc)", "fastspike kernels (launchers)", "SpikingJelly 2.0", "snnTorch",
         "Norse", "floor (memcpy)"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case,point,mode", bench_case_params("neuron"))
def test_neuron(run_impl, case, point, mode, impl):
    run_impl(case, point, mode, impl)
