"""SevenNet as a stability judge: the same verdict documents as CHGNet's, sensible E_form, the funnel."""

from __future__ import annotations

import math

import pytest
import torch

from generators.templates import TemplateLibrary, propose_structures
from oracles.stability.checker import PhaseEnergies, StabilityChecker, Verdict, get_model
from oracles.stability.funnel import FunnelChecker
from oracles.stability.relaxers import DEFAULT_SEVENNET, get_relaxer
from oracles.stability.verdicts import StabilityVerdict

torch.set_num_threads(1)

#: Materials Project DFT formation energies (eV/atom), lowest polymorph in data/formation/matbench_mp_e_form.csv
MP_E_FORM = {"NaCl": -2.105, "MgO": -3.065}


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary.load()


@pytest.fixture(scope="module")
def sevennet(library, tmp_path_factory) -> StabilityChecker:
    """The default SevenNet judge: committed elemental references, competing phases computed afresh."""
    relaxer = get_relaxer(DEFAULT_SEVENNET)
    phases = PhaseEnergies(library, path=tmp_path_factory.mktemp("p") / "p.json", relaxer=relaxer)
    return StabilityChecker(library=library, relaxer=relaxer, phases=phases)


@pytest.fixture(scope="module")
def chgnet(library, tmp_path_factory) -> StabilityChecker:
    model = get_model(threads=1)
    phases = PhaseEnergies(library, path=tmp_path_factory.mktemp("c") / "p.json", model=model)
    return StabilityChecker(library=library, model=model, phases=phases)


def test_sevennet_relaxation_lowers_the_energy() -> None:
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup(225, Lattice.cubic(6.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    res = get_relaxer(DEFAULT_SEVENNET).relax(s.get_primitive_structure(), fmax=0.1, steps=60)
    assert res.converged and res.energy_per_atom < res.initial_energy_per_atom - 0.01
    assert res.structure.volume < s.get_primitive_structure().volume


@pytest.mark.parametrize("formula", ["NaCl", "MgO"])
def test_sevennet_e_form_near_mp(sevennet, library, formula: str) -> None:
    """Relaxed from the MP structure (the template library's own record): E_form within 0.1 eV/atom of MP."""
    v = sevennet.evaluate(propose_structures(formula, library, k=1)[0])
    assert v.model.startswith("sevennet-") and DEFAULT_SEVENNET in v.model
    assert v.converged and v.verdict in {StabilityVerdict.STABLE, StabilityVerdict.NEAR_HULL}
    assert v.e_form == pytest.approx(MP_E_FORM[formula], abs=0.1)
    assert v.extra["n_competing_phases"] >= 1


def test_sevennet_and_chgnet_give_the_same_document_shape(sevennet, chgnet, library) -> None:
    from flows.pipelines.structures import verdict_doc

    trial = propose_structures("NaCl", library, k=1)[0]
    docs = {name: verdict_doc("c", trial, chk.evaluate(trial)) for name, chk in {"c": chgnet, "s": sevennet}.items()}

    def shape(d):
        return {k: sorted(v) if isinstance(v, dict) and k != "structure" else type(v).__name__ for k, v in d.items()}

    assert shape(docs["c"]) == shape(docs["s"])
    assert docs["c"]["model"] == "chgnet-0.4.2-pretrained" and docs["s"]["model"].startswith("sevennet-")
    assert {docs["c"]["verdict"], docs["s"]["verdict"]} <= {v.value for v in StabilityVerdict}
    assert abs(docs["c"]["e_form"] - docs["s"]["e_form"]) < 0.15


def _verdict(verdict: str, e_form: float = -1.0, e_hull: float = 0.0) -> Verdict:
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return Verdict("NaCl", "t", StabilityVerdict(verdict), None, s, e_form=e_form, e_hull=e_hull, converged=True)


def test_funnel_prescreen_rule(sevennet) -> None:
    funnel = FunnelChecker(screen=sevennet, judge=sevennet, margin=0.1)  # e_hull_max 0.1
    assert funnel.survives(_verdict("stable"))
    assert funnel.survives(_verdict("unstable", e_hull=0.19))  # within the margin: tier 2 decides
    assert not funnel.survives(_verdict("unstable", e_hull=0.21))
    assert not funnel.survives(_verdict("unstable", e_form=0.15, e_hull=math.nan))
    assert funnel.survives(_verdict("unconverged", e_hull=0.05))
    assert not funnel.survives(_verdict("failed"))


def test_funnel_judges_survivors_with_the_strong_model(sevennet, chgnet, library) -> None:
    v = FunnelChecker(chgnet, sevennet).evaluate(propose_structures("NaCl", library, k=1)[0])
    assert v.model == sevennet.model_name
    assert v.extra["prescreen"]["model"] == "chgnet-0.4.2-pretrained"
    assert v.seconds >= v.extra["prescreen"]["seconds"]
    assert v.e_form == pytest.approx(MP_E_FORM["NaCl"], abs=0.1)
