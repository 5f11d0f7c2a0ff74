"""The template library and the fallback index without the hidden formulas of a hold-out split."""

from __future__ import annotations

import pytest

from alcore.errors import HoldoutLeakError
from alcore.holdout import assert_no_leak
from generators.templates import KnownSpacegroups, TemplateLibrary, anonymised_key, propose_structures
from tests.conftest import SPLIT_UNIVERSE

UNIVERSE = SPLIT_UNIVERSE  # seed 18 hides the systems Ca-O, Cl-K, Mg-O and F-Na


@pytest.fixture(scope="module")
def split(small_split):
    return small_split


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary.load()


def test_without_removes_hidden_formulas(library: TemplateLibrary, split) -> None:
    hidden = {f for f in set(library.formulas.tolist()) if split.is_hidden(f)}
    assert {"KCl", "CaO", "MgO", "NaF", "MgO2"} <= hidden  # MgO2: a hidden system, not in the universe
    with pytest.raises(HoldoutLeakError):
        assert_no_leak("full library", library.formulas, split)
    vis = library.without(hidden)
    assert len(vis) == len(library) - int(sum(f in hidden for f in library.formulas.tolist()))
    assert_no_leak("visible library", vis.formulas, split)
    # planted: a hidden formula added back is caught
    with pytest.raises(HoldoutLeakError, match="KCl"):
        assert_no_leak("visible library + planted", list(vis.formulas) + ["KCl"], split)
    # the full library finds KCl itself; the visible one only other 1-1 compounds
    row, d = library.search("KCl", k=1)[0]
    assert str(library.formulas[row]) == "KCl" and d == pytest.approx(0.0, abs=1e-12)
    hits = vis.search("KCl", k=5)
    assert len(hits) == 5 and all(d > 0 for _, d in hits)
    for r, _ in hits:
        t = vis.template(r)  # rows map to the right lines of the shared file
        assert t.formula == str(vis.formulas[r]) and t.tid == str(vis.tids[r]) and anonymised_key(t.formula) == "1-1"
        assert not split.is_hidden(t.formula)
        assert vis.template(t.tid).tid == t.tid
    trials = propose_structures("KCl", vis, k=3)
    assert len(trials) == 3 and all(not split.is_hidden(t.template["formula"]) for t in trials)
    assert all(t.structure is not None and t.structure.composition.reduced_formula == "KCl" for t in trials)
    # load() takes the same parameter; None keeps everything (backward compatible)
    assert len(TemplateLibrary.load(exclude_formulas=hidden)) == len(vis)
    assert len(TemplateLibrary.load(exclude_formulas=None)) == len(library)


def test_known_spacegroups_exclude(split) -> None:
    full = KnownSpacegroups()
    hidden = {f for f in full.formulas.tolist() if split.is_hidden(f)}
    vis = KnownSpacegroups(exclude_formulas=hidden)
    assert len(vis.formulas) == len(full.formulas) - len(hidden)
    assert_no_leak("known compositions", vis.formulas, split)
    assert full.nearest("KCl", k=1)[0].formula == "KCl"
    assert all(f != "KCl" and not split.is_hidden(f) for f in (n.formula for n in vis.nearest("KCl", k=5)))
