"""NIR import validation (issue 18, item 6): every parameter is checked at import time with a named error,
in memory and from a file (one regression test per reported case). The property tests over malformed graphs
are in tests/test_export_nir_fuzz.py."""
import h5py
import numpy as np
import pytest
import torch

from helpers import DEVICE

nir = pytest.importorskip("nir")

from fastspike.export import from_nir, to_nir  # noqa: E402

DT = 1e-3


def _graph(node, shape=(3,), name="n"):
    nodes = {"input": nir.Input(input_type=np.array(shape)), name: node,
             "output": nir.Output(output_type=np.array(shape))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", name), (name, "output")], type_check=False)


def _lif(n=3, **kw):
    p = dict(tau=np.full(n, 4 * DT), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    p.update(kw)
    return nir.LIF(**p)


def _conv(**kw):
    p = dict(input_shape=(6, 6), weight=np.ones((2, 1, 3, 3), dtype=np.float32), stride=1, padding=1, dilation=1,
             groups=1, bias=np.zeros(2, dtype=np.float32))
    p.update(kw)
    return nir.Conv2d(**p)


def _mutated(node, **fields):
    """``node`` with fields replaced after construction (what a file or a careless tool can hand over)."""
    for k, v in fields.items():
        setattr(node, k, v)
    return node


# ------------------------------------------------------------------------------------------------
# one regression test per item of the report
# ------------------------------------------------------------------------------------------------
def test_lif_tau_inf_is_refused():
    with pytest.raises(ValueError, match=r"node 'n' \(LIF\): 'tau' has 3 non-finite value\(s\) \(e\.g\. inf\)"):
        from_nir(_graph(_lif(tau=np.full(3, np.inf))), dt=DT)


def test_nan_tau_is_named_as_non_finite_not_as_per_neuron_difference():
    with pytest.raises(ValueError, match="'tau' has 1 non-finite") as info:
        from_nir(_graph(_lif(tau=np.array([4 * DT, np.nan, 4 * DT]))), dt=DT)
    assert "per neuron" not in str(info.value)


@pytest.mark.parametrize("field", ["weight", "bias"])
def test_nan_weights_and_biases_are_refused(field):
    w, b = np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.float32)
    (w if field == "weight" else b)[1] = np.nan
    with pytest.raises(ValueError, match=rf"node 'n' \(Affine\): '{field}' has \d+ non-finite"):
        from_nir(_graph(nir.Affine(weight=w, bias=b)), dt=DT)
    conv = _conv()
    getattr(conv, field)[0] = np.inf
    with pytest.raises(ValueError, match=rf"node 'n' \(Conv2d\): '{field}' has \d+ non-finite"):
        from_nir(_graph(conv, shape=(1, 6, 6)), dt=DT)


def test_bias_of_the_wrong_length_is_refused_at_import():
    with pytest.raises(ValueError, match=r"'bias' has shape \(5,\), but the weight \(3, 3\) has 3 output"):
        from_nir(_graph(nir.Affine(weight=np.eye(3), bias=np.zeros(5))), dt=DT)
    with pytest.raises(ValueError, match=r"node 'n' \(Conv2d\): 'bias' has shape \(4,\)"):
        from_nir(_graph(_mutated(_conv(), bias=np.zeros(4)), shape=(1, 6, 6)), dt=DT)


@pytest.mark.parametrize("field,value,match", [
    ("stride", 0, r"'stride' must be >= 1, but got 0"),
    ("stride", np.array([1, 0]), r"'stride' must be >= 1"),
    ("dilation", -1, r"'dilation' must be >= 1"),
    ("padding", -2, r"'padding' must be >= 0"),
    ("padding", "full", r"'padding' is 'full'"),
    ("groups", 3, r"'groups' is 3, which does not divide the 2 output channels"),
    ("stride", 1.5, r"'stride' must be integer"),
    ("stride", np.array([1, 1, 1]), r"'stride' must be one integer or 2"),
])
def test_conv_integer_fields_are_checked(field, value, match):
    with pytest.raises(ValueError, match=r"node 'n' \(Conv2d\): " + match):
        from_nir(_graph(_mutated(_conv(), **{field: value}), shape=(1, 6, 6)), dt=DT)


def test_pool_fields_are_checked():
    def pool(**kw):
        p = dict(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
        p.update(kw)
        return nir.SumPool2d(**p)

    with pytest.raises(ValueError, match=r"\(SumPool2d\): 'stride' must be >= 1"):
        from_nir(_graph(pool(stride=np.array([0, 0])), shape=(1, 4, 4)), dt=DT)
    with pytest.raises(ValueError, match=r"\(SumPool2d\): 'padding' is \(2, 2\) with kernel \(2, 2\)"):
        from_nir(_graph(pool(padding=np.array([2, 2])), shape=(1, 4, 4)), dt=DT)


def test_mismatched_parameter_lengths_are_named_not_a_bare_assertion():
    lif = _mutated(_lif(), r=np.ones(2))
    with pytest.raises(ValueError, match=r"node 'n' \(LIF\) has per-neuron parameters of different shapes "
                                         r"\(tau \(3,\), r \(2,\)"):
        from_nir(_graph(lif), dt=DT)
    cuba = nir.CubaLIF(tau_syn=np.full(3, 2 * DT), tau_mem=np.full(3, 4 * DT), r=np.ones(3), v_leak=np.zeros(3),
                       v_threshold=np.ones(3), v_reset=np.zeros(3), w_in=np.ones(3))
    with pytest.raises(ValueError, match=r"\(CubaLIF\) has per-neuron parameters of different shapes"):
        from_nir(_graph(_mutated(cuba, w_in=np.ones(4))), dt=DT)


def test_non_positive_time_constants_and_gains_are_refused():
    with pytest.raises(ValueError, match=r"'tau' has non-positive"):
        from_nir(_graph(_lif(tau=np.full(3, -1.0))), dt=DT)
    with pytest.raises(ValueError, match=r"\(LIF\): 'r' has non-positive"):
        from_nir(_graph(_lif(r=np.zeros(3))), dt=DT)
    with pytest.raises(ValueError, match=r"\(IF\): 'r' has non-positive"):
        from_nir(_graph(nir.IF(r=np.full(3, -1.0), v_threshold=np.ones(3), v_reset=np.zeros(3))), dt=DT)


def test_non_numeric_parameters_are_a_type_error():
    with pytest.raises(TypeError, match=r"node 'n' \(Affine\): 'weight' must be a numeric array, but got str"):
        from_nir(_graph(_mutated(nir.Affine(weight=np.eye(3), bias=np.zeros(3)), weight="abc")), dt=DT)
    with pytest.raises(TypeError, match=r"\(Flatten\): 'start_dim' must be an integer"):
        from_nir(_graph(_mutated(nir.Flatten(input_type=np.array([3]), start_dim=0, end_dim=-1), start_dim=0.5)),
                 dt=DT)


@pytest.mark.parametrize("name", ["", "training", "keys", "forward", "a.b", "n/x", "0"])
def test_odd_node_names_import_and_run(name):
    m = from_nir(_graph(nir.Affine(weight=2 * np.eye(3), bias=np.ones(3)), name=name), dt=DT).to(DEVICE)
    out = m(torch.ones(2, 3, device=DEVICE))
    assert torch.equal(out, torch.full((2, 3), 3.0, device=DEVICE))
    assert isinstance(m.node(name), torch.nn.Linear)
    assert m.node_names() == [name]


def test_non_string_node_names_and_bad_edges_are_named():
    g = _graph(nir.Affine(weight=np.eye(3), bias=np.zeros(3)))
    g.nodes[5] = g.nodes.pop("n")
    with pytest.raises(TypeError, match="node names must be strings, but the graph has a node named 5"):
        from_nir(g, dt=DT)
    g = _graph(nir.Affine(weight=np.eye(3), bias=np.zeros(3)))
    g.edges.append(("n",))
    with pytest.raises(ValueError, match=r"every edge must be a \(source, target\) pair"):
        from_nir(g, dt=DT)


def test_shape_mismatch_between_nodes_is_named_at_import():
    nodes = {"input": nir.Input(input_type=np.array([3])), "fc1": nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)),
             "fc2": nir.Linear(weight=np.ones((2, 5))), "output": nir.Output(output_type=np.array([2]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc1"), ("fc1", "fc2"), ("fc2", "output")], type_check=False)
    with pytest.raises(ValueError, match=r"node 'fc2' \(Linear\) cannot take its input \(fc1 \(4,\), per sample\)"):
        from_nir(g, dt=DT)
    # a per-neuron parameter that does not match the layer before
    nodes = {"input": nir.Input(input_type=np.array([3])), "fc": nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)),
             "sn": nir.CubaLIF(tau_syn=np.full(3, 2 * DT), tau_mem=np.full(3, 4 * DT), r=np.ones(3),
                               v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3), w_in=np.ones(3)),
             "output": nir.Output(output_type=np.array([3]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "sn"), ("sn", "output")], type_check=False)
    with pytest.raises(ValueError, match=r"node 'sn' \(CubaLIFNode\) cannot take its input \(fc \(4,\)"):
        from_nir(g, dt=DT)


def test_input_shape_with_the_batch_dimension_is_accepted():
    # Norse 1.1 writes the Input shape with the batch dimension
    g = _graph(nir.Affine(weight=np.eye(3), bias=np.zeros(3)), shape=(7, 3))
    m = from_nir(g, dt=DT)
    assert m(torch.ones(2, 3)).shape == (2, 3)


# ------------------------------------------------------------------------------------------------
# the same from a file: the broken node is named instead of NIR's bare AssertionError / OverflowError
# ------------------------------------------------------------------------------------------------
def _write_and_patch(tmp_path, graph, patch):
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    with h5py.File(path, "r+") as f:
        patch(f["node"]["nodes"])
    return path


def _replace(group, key, value):
    del group[key]
    group.create_dataset(key, data=value)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # nir's own shape inference, before ours
def test_file_with_stride_zero_names_the_node(tmp_path):
    path = _write_and_patch(tmp_path, _graph(_conv(), shape=(1, 6, 6), name="conv"),
                            lambda nodes: _replace(nodes["conv"], "stride", np.array([0, 0])))
    with pytest.raises(ValueError, match=r"g\.nir'.*node 'conv' \(Conv2d\): 'stride' must be >= 1"):
        from_nir(path, dt=DT)


def test_file_with_mismatched_lengths_names_the_node(tmp_path):
    path = _write_and_patch(tmp_path, _graph(_lif(), name="lif"),
                            lambda nodes: _replace(nodes["lif"], "r", np.ones(2)))
    with pytest.raises(ValueError, match=r"node 'lif' \(LIF\) has per-neuron parameters of different shapes"):
        from_nir(path, dt=DT)


def test_file_with_nan_weights_and_inf_tau(tmp_path):
    path = _write_and_patch(tmp_path, _graph(nir.Affine(weight=np.eye(3), bias=np.zeros(3)), name="fc"),
                            lambda nodes: _replace(nodes["fc"], "weight", np.full((3, 3), np.nan)))
    with pytest.raises(ValueError, match=r"node 'fc' \(Affine\): 'weight' has 9 non-finite"):
        from_nir(path, dt=DT)
    path = _write_and_patch(tmp_path, _graph(_lif(), name="lif"),
                            lambda nodes: _replace(nodes["lif"], "tau", np.full(3, np.inf)))
    with pytest.raises(ValueError, match=r"node 'lif' \(LIF\): 'tau' has 3 non-finite"):
        from_nir(path, dt=DT)


def test_export_writes_atomically(tmp_path, monkeypatch):
    path = tmp_path / "net.nir"
    path.write_bytes(b"previous content")

    def failing_write(filename, graph, **kw):
        with open(filename, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        to_nir(torch.nn.Linear(2, 2), torch.zeros(1, 2), path=path)
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["net.nir"]
