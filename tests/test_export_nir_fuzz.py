"""Property tests (hypothesis) of NIR import: malformed graphs, in memory and read from a file, end in a named
ValueError/TypeError or in a module that runs on its Input shape. Bounded: 600 + 200 derandomized examples,
about 6 s."""
import math
import tempfile

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
hypothesis = pytest.importorskip("hypothesis")

from fastspike.export import from_nir  # noqa: E402
from test_export_nir_validation import DT, _conv, _lif  # noqa: E402

st = hypothesis.strategies


_BAD_ARRAYS = [np.array([np.nan]), np.array([np.inf]), np.array([-np.inf]), np.zeros((0,)), np.zeros((2, 2, 2)),
               "text", None, np.array(["a", "b"]), np.ones(7)]
_BAD_INTS = [0, -1, 1.5, np.nan, np.array([1, 2, 3]), "same", "x", None, 2 ** 40, np.array([[1]])]


def _valid_nodes(n: int):
    """A valid node of every importable type for a per-sample input of n features (or 1 x 4 x 4 for 2-D)."""
    return {
        "Affine": (nir.Affine(weight=np.ones((n, n), dtype=np.float32), bias=np.zeros(n, dtype=np.float32)), (n,)),
        "Linear": (nir.Linear(weight=np.ones((n, n), dtype=np.float32)), (n,)),
        "Conv1d": (nir.Conv1d(input_shape=n, weight=np.ones((1, 1, 1), dtype=np.float32), stride=1, padding=0,
                              dilation=1, groups=1, bias=np.zeros(1, dtype=np.float32)), (1, n)),
        "Conv2d": (_conv(), (1, 6, 6)),
        "SumPool2d": (nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
                      (1, 4, 4)),
        "AvgPool2d": (nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
                      (1, 4, 4)),
        "Flatten": (nir.Flatten(input_type=np.array([1, 2, 2]), start_dim=0, end_dim=-1), (1, 2, 2)),
        "Scale": (nir.Scale(scale=np.ones(n)), (n,)),
        "IF": (nir.IF(r=np.full(n, 1 / DT), v_threshold=np.ones(n), v_reset=np.zeros(n)), (n,)),
        "LIF": (_lif(n), (n,)),
        "CubaLIF": (nir.CubaLIF(tau_syn=np.full(n, 2 * DT), tau_mem=np.full(n, 4 * DT), r=np.ones(n),
                                v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.ones(n)),
                    (n,)),
    }


_FIELDS = {
    "Affine": ["weight", "bias"], "Linear": ["weight"],
    "Conv1d": ["weight", "bias", "stride", "padding", "dilation", "groups"],
    "Conv2d": ["weight", "bias", "stride", "padding", "dilation", "groups"],
    "SumPool2d": ["kernel_size", "stride", "padding"], "AvgPool2d": ["kernel_size", "stride", "padding"],
    "Flatten": ["start_dim", "end_dim"], "Scale": ["scale"],
    "IF": ["r", "v_threshold", "v_reset"], "LIF": ["tau", "r", "v_leak", "v_threshold", "v_reset"],
    "CubaLIF": ["tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"],
}
_INT_FIELDS = {"stride", "padding", "dilation", "groups", "kernel_size", "start_dim", "end_dim"}


@st.composite
def _malformed_graphs(draw):
    n = draw(st.integers(1, 4))
    kinds = draw(st.lists(st.sampled_from(sorted(_FIELDS)), min_size=1, max_size=3))
    nodes, edges, prev, shape = {}, [], "input", None
    for i, kind in enumerate(kinds):
        node, in_shape = _valid_nodes(n)[kind]
        shape = shape or in_shape
        for field in draw(st.lists(st.sampled_from(_FIELDS[kind]), max_size=2, unique=True)):
            pool = _BAD_INTS if field in _INT_FIELDS else _BAD_ARRAYS
            setattr(node, field, draw(st.sampled_from(pool + [np.ones(draw(st.integers(0, 5)))])))
        name = draw(st.sampled_from([f"n{i}", "", "keys", "a.b", f"x{i}.y"]))
        name = name if name not in nodes else f"{name}_{i}"
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    in_shape = draw(st.sampled_from([shape, (n,), (0,), (n, n), (1, 6, 6)]))
    nodes["input"] = nir.Input(input_type=np.array(in_shape))
    nodes["output"] = nir.Output(output_type=np.array([n]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), in_shape


@hypothesis.settings(max_examples=600, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(_malformed_graphs())
def test_malformed_graphs_give_named_errors_or_a_working_module(case):
    graph, in_shape = case
    try:
        m = from_nir(graph, dt=DT)
    except (ValueError, TypeError) as e:
        assert str(e).startswith(("from_nir:", "dt ")), f"unnamed error: {type(e).__name__}: {e}"
        return
    # imported: it runs on the declared input shape and keeps NaN out of a zero input
    with torch.no_grad():
        try:
            out = m(torch.zeros(1, *in_shape))
        except (RuntimeError, ValueError):
            out = m(torch.zeros(*in_shape))  # an Input shape that includes the batch (accepted by the dry run)
    assert isinstance(out, torch.Tensor)
    assert not torch.isnan(out).any()
    assert math.isfinite(float(out.abs().sum()))


@hypothesis.settings(max_examples=200, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(_malformed_graphs())
def test_malformed_graphs_read_from_a_file_give_named_errors_or_a_working_module(case):
    graph, in_shape = case
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/g.nir"
        try:
            nir.write(path, graph)
        except Exception:
            hypothesis.reject()
        try:
            m = from_nir(path, dt=DT)
        except (ValueError, TypeError) as e:
            assert str(e).startswith("from_nir:"), f"unnamed error: {type(e).__name__}: {e}"
            return
    with torch.no_grad():
        try:
            out = m(torch.zeros(1, *in_shape))
        except (RuntimeError, ValueError):
            out = m(torch.zeros(*in_shape))
    assert not torch.isnan(out).any()
