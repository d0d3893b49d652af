"""Every public name of SpikingJelly 2.0.0 exists at the same fastspike path with the same signature, or is
listed as out of scope (docs/api_coverage.md) or as pending (tests/sj_names/_pending.txt).

The name lists in tests/sj_names/ are written by tools/sj_public_names.py; the comparison lives in
tools/api_coverage.py (``python tools/api_coverage.py --failures`` prints the same table and every gap).
"""
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import api_coverage as cov  # noqa: E402

#: modules this branch owns: complete, never in the pending list
OWNED = (
    "spikingjelly.activation_based.functional",
    "spikingjelly.activation_based.surrogate",
    "spikingjelly.activation_based.encoding",
    "spikingjelly.activation_based.learning",
    "spikingjelly.activation_based.rnn",
    "spikingjelly.activation_based.monitor",
)


@pytest.fixture(scope="module")
def reports():
    return cov.build_report()


def test_name_lists_exist():
    lists = cov.load_lists()
    assert len(lists) > 100, "tests/sj_names/ should hold one list per public SpikingJelly module"
    for mod in OWNED:
        assert mod in lists and lists[mod], f"no name list for {mod}"


def test_every_name_matches_or_is_listed(reports):
    failures = [line for r in reports for line in r.failures()]
    assert not failures, (f"{len(failures)} SpikingJelly names are neither at their fastspike path with the same "
                          "signature nor listed in docs/api_coverage.md (out of scope) or "
                          "tests/sj_names/_pending.txt:\n"
                          + "\n".join(failures))


def test_pending_entries_still_pending(reports):
    """A pending entry whose name matches now must be deleted (the list only shrinks)."""
    stale = [f"{r.sj_module}:{n}" for r in reports for n in r.stale_pending]
    assert not stale, ("these names match now; delete them from tests/sj_names/_pending.txt (a whole-module entry: "
                       "`python tools/api_coverage.py --write-pending` lists what still fails, name by name):\n"
                       + "\n".join(stale))
    lists = cov.load_lists()
    for entry in cov.load_pending():
        mod, _, name = entry.partition(":")
        assert mod in lists, f"_pending.txt names an unknown SpikingJelly module: {entry!r}"
        if name:
            assert any(e.name == name for e in lists[mod]), f"_pending.txt names an unknown name: {entry!r}"


def test_out_of_scope_rows_name_real_modules():
    lists = cov.load_lists()
    rows = cov.load_out_of_scope()
    assert rows, "docs/api_coverage.md has no '## Out of scope' table"
    for pattern, reason in rows.items():
        assert reason.strip(), f"out-of-scope row {pattern!r} has no reason"
        assert any(cov.covers(pattern, mod, e.name) for mod, entries in lists.items() for e in entries), \
            f"out-of-scope row {pattern!r} matches no SpikingJelly name"


def test_owned_modules_complete(reports):
    by_mod = {r.sj_module: r for r in reports}
    for mod, rep in by_mod.items():
        if any(mod == o or mod.startswith(o + ".") for o in OWNED):
            assert not rep.pending and not rep.missing and not rep.mismatched and not rep.out_of_scope, \
                f"{mod}: pending {rep.pending}, missing {rep.missing}, mismatched {rep.mismatched}"
            assert rep.percent == 100.0


def test_coverage_table(reports, capsys):
    table = cov.format_table(reports)
    with capsys.disabled():
        print("\n" + table)
    total = table.splitlines()[-1]
    assert total.startswith("TOTAL")


# ---------------------------------------------------------------------------------------------------------
# the comparison itself catches what it should
# ---------------------------------------------------------------------------------------------------------
def _f(x, v, tau=2.0, *, store=False):
    pass


@pytest.mark.parametrize("sj_sig, ok", [
    ("(x, v, tau=2.0, *, store=False)", True),
    ("(x, v, tau=2.0)", True),                  # fastspike may add keyword parameters with defaults
    ("(x, v, tau=3.0, *, store=False)", False),  # another default
    ("(x, w, tau=2.0, *, store=False)", False),  # another name
    ("(x, v, tau, *, store=False)", False),      # SpikingJelly's is required
    ("(x, v, tau=2.0, store=False)", False),     # positional there, keyword-only here
    ("(x, v, tau=2.0, *, store=False, extra=1)", False),
])
def test_compare_signature(sj_sig, ok):
    why = cov.compare_signature(sj_sig, _f, "function")
    assert (why is None) == ok, why


def test_compare_signature_defaults():
    import torch

    from fastspike import surrogate

    def g(dtype=torch.uint8, sg=surrogate.Sigmoid(), f=lambda x: x):
        pass

    assert cov.compare_signature("(dtype=torch.uint8, sg=surrogate.Sigmoid(), f=lambda x: x)", g, "function") is None
    assert cov.compare_signature("(dtype=torch.float32, sg=surrogate.Sigmoid(), f=lambda x: x)", g, "function")
    assert cov.compare_signature("(dtype=torch.uint8, sg=surrogate.ATan(), f=lambda x: x)", g, "function")


def test_extra_required_parameter_is_reported():
    def h(x, y):
        pass

    assert "extra required" in cov.compare_signature("(x)", h, "function")


def test_fastspike_path():
    assert cov.fastspike_path("spikingjelly.activation_based.functional.neuron") == "fastspike.functional.neuron"
    assert cov.fastspike_path("spikingjelly.datasets.dvs128_gesture") == "fastspike.datasets.dvs128_gesture"
    with pytest.raises(ValueError, match="spikingjelly.timing_based"):
        cov.fastspike_path("spikingjelly.timing_based.neuron")


@pytest.mark.peers
def test_lists_match_installed_spikingjelly(tmp_path):
    """The committed lists are what the tool writes from the installed SpikingJelly 2.0.0."""
    pytest.importorskip("spikingjelly")
    from importlib.metadata import version

    if version("spikingjelly") != "2.0.0":
        pytest.skip(f"the lists describe SpikingJelly 2.0.0, installed is {version('spikingjelly')}")
    gen = importlib.import_module("sj_public_names")
    assert gen.main(["--out", str(tmp_path)]) == 0
    committed = {p.name: p.read_text() for p in cov.NAMES_DIR.glob("spikingjelly.*.txt")}
    fresh = {p.name: p.read_text() for p in tmp_path.glob("spikingjelly.*.txt")}
    assert committed.keys() == fresh.keys()
    for name in fresh:
        assert committed[name] == fresh[name], f"tests/sj_names/{name} differs from a fresh run of the tool"
