"""The three structure generators behind one interface (committed weights and template library)."""

from __future__ import annotations

import pytest
import torch

from alcore.errors import ConfigError
from generators.structure_generators import (
    STRUCTURE_GENERATORS,
    StructureGenerator,
    get_structure_generator,
)
from generators.templates import Trial

torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(STRUCTURE_GENERATORS))
def test_each_generator_proposes_through_the_same_interface(name: str) -> None:
    gen = get_structure_generator(name)
    assert isinstance(gen, StructureGenerator) and gen.name == name
    formula = {"templates": "NaCl", "cccgan": "Mg2Mn2O6", "crystalgan": None}[name]
    first = gen.propose(3, seed=0, formula=formula)
    again = gen.propose(3, seed=0, formula=formula)
    assert 1 <= len(first) <= 3 and all(isinstance(p, Trial) for p in first)
    assert all(p.structure is not None or p.reason for p in first)
    if name != "templates":
        assert all(p.template["source"] == name and p.template_id.startswith(name) for p in first)
    assert [p.formula for p in first] == [p.formula for p in again]  # seeded
    made = [p for p in first if p.structure is not None]
    assert made, f"{name} made no structure at all"
    if name == "templates":
        assert {p.formula for p in first} == {"NaCl"} and all(p.template["source"] for p in first)
    if name == "crystalgan":
        assert all(set(p.structure.symbol_set) <= {"Pd", "Ni", "H"} for p in made)
    if name == "cccgan":
        assert all(p.structure.composition.reduced_formula == "MgMnO3" for p in made)


def test_formula_required_and_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="needs a target formula"):
        get_structure_generator("templates").propose(2, seed=0)
    with pytest.raises(ConfigError, match="unknown structure generator 'nope'; known: cccgan, crystalgan, templates"):
        get_structure_generator("nope")
