"""Structure recovery on hidden compounds: known structures, the visible stage, one compound, and the
resumable flow on a tiny split (few FIRE steps)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from flows.pipelines.structure_recovery import (
    RecoveryParams,
    RecoverySample,
    load_known_structures,
    qualified_references,
    record_problem,
    recover_compound,
    sample_formulas,
    schedule_order,
    structure_recovery_flow,
    visible_stage,
)
from flows.store import Store
from generators.templates import TemplateLibrary
from tests.conftest import SPLIT_UNIVERSE

UNIVERSE = SPLIT_UNIVERSE  # seed 18 hides the systems Ca-O, Cl-K, Mg-O and F-Na


def _rocksalt(a: float, species: tuple[str, str]) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _record(rid: str, source: str, s: Structure, spg: int, e_form: float | None = None, mpid: str | None = None):
    props = {"material_id": mpid} if mpid else {}
    if e_form is not None:
        props["e_form_per_atom"] = e_form
    return {
        "id": rid,
        "source": source,
        "formula": s.composition.formula.replace(" ", ""),
        "reduced_formula": s.composition.reduced_formula,
        "nsites": len(s),
        "elements": sorted(e.symbol for e in s.composition.elements),
        "ordered": True,
        "spg": spg,
        "props": props,
        "cif": s.to(fmt="cif"),
    }


@pytest.fixture(scope="module")
def split(small_split):
    return small_split


@pytest.fixture(scope="module")
def structure_dir(tmp_path_factory) -> Path:
    """Known structures in the shared files' format: rock-salt KCl (ground state) and a CsCl-type KCl polymorph,
    rock-salt CaO (MP), MgO from AMCSD only, NaF only from a hypothetical set (not known), NaCl (visible)."""
    d = tmp_path_factory.mktemp("known")
    kcl_cscl = Structure(Lattice.cubic(3.8), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mp = [
        _record("mp:kcl-rs", "mp_kdmsit_megnet", _rocksalt(6.29, ("K", "Cl")), 225, -2.16, "mp-23193"),
        _record("mp:kcl-cscl", "mp_kdmsit_megnet", kcl_cscl, 221, -2.10, "mp-1"),
        _record("mp:cao", "mp_kdmsit_megnet", _rocksalt(4.83, ("Ca", "O")), 225, -3.2, "mp-2605"),
        _record("mp:nacl", "mp_kdmsit_megnet", _rocksalt(5.69, ("Na", "Cl")), 225, -2.1, "mp-22862"),
    ]
    merged = [
        _record("amcsd:mgo", "amcsd_larixite", _rocksalt(4.21, ("Mg", "O")), 225),
        _record("perov:naf", "perov5_val_cdvae", _rocksalt(4.63, ("Na", "F")), 225),
        _record("mp:kcl-rs-copy", "mp_3dsc_raw", _rocksalt(6.29, ("K", "Cl")), 225, None, "mp-23193"),
        # a magnetic-sublattice CIF of another compound (Mg3CdO4 without Cd, as in the curie_neel set)
        _record(
            "LazyDragon1123/curie_neel_data:CIFs/Mg3CdO4/Mg3CdO4_0_mag.cif",
            "magnetic_curie_neel_mpcifs",
            Structure(Lattice.cubic(9.0), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            221,
        ),
    ]
    for name, recs in (("mp_megnet_36k.jsonl.gz", mp), ("templates_merged.jsonl.gz", merged)):
        with gzip.open(d / name, "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in recs)
    return d


def test_known_structures_and_sample(split, structure_dir: Path) -> None:
    stats: dict[str, int] = {}
    known = load_known_structures(split, structure_dir, stats)
    assert set(known) == {"KCl", "CaO", "MgO"}  # NaCl is visible, NaF has no known (MP/experimental) structure
    assert stats == {"inconsistent": 1} and len(known["MgO"]) == 1  # the Mg3CdO4 sublattice record is skipped
    assert len(known["KCl"]) == 2  # the 3DSC copy of mp-23193 is the same material
    refs = qualified_references(known, max_sites=20)
    assert refs["KCl"].id == "mp:kcl-rs" and refs["KCl"].spg == 225  # the ground state, not the CsCl polymorph
    assert refs["MgO"].source == "amcsd_larixite"
    # the chosen known structure decides: KCl's 8-site ground state is too big, its 2-site polymorph does not count
    assert set(qualified_references(known, max_sites=4)) == set()
    assert set(qualified_references(known, max_sites=8)) == {"KCl", "CaO", "MgO"}
    assert sample_formulas(refs, 2, seed=0) == sample_formulas(list(reversed(list(refs))), 2, seed=0)
    assert len(sample_formulas(refs, 2, seed=0)) == 2 and sample_formulas(refs, 9) == sorted(refs)
    assert sorted(schedule_order(refs, 0)) == sorted(refs)
    with pytest.raises(Exception, match="pass structure_dir"):
        load_known_structures(split, structure_dir / "nowhere")


def test_record_problem() -> None:
    assert record_problem("LazyDragon1123/curie_neel_data:CIFs/Al2GdNi/Al2GdNi_0.cif", "GdAl2Ni") is None
    assert "not SmPd2" in record_problem("LazyDragon1123/curie_neel_data:CIFs/SmPd2Cd20/SmPd2Cd20_0_mag.cif", "SmPd2")
    assert record_problem("kdmsit/MEGNet:data/0.cif", "Cs") is None


def test_recover_one_hidden_compound(split, structure_dir: Path) -> None:
    stage = visible_stage(split, TemplateLibrary.load())
    assert stage.n_removed_templates > 0 and stage.n_removed_known > 0
    assert "KCl" not in set(stage.library.formulas.tolist())
    refs = qualified_references(load_known_structures(split, structure_dir))
    docs, doc = recover_compound("t", "KCl", refs["KCl"], stage, RecoveryParams(k_templates=2, steps=25))
    assert len(docs) == 3 and docs[-1]["template_id"] == "reference:mp-23193"
    assert {d["campaign"] for d in docs} == {"t"} and all(d["formula"] == "KCl" for d in docs)
    assert len(doc["trials"]) == 2
    for t in doc["trials"]:
        assert t["template_formula"] != "KCl" and not split.is_hidden(t["template_formula"])
    # KCl's nearest visible 1-1 templates (alkali halides) are rock salt: the stage recovers the known structure
    assert doc["rank_energy"] == 1 and doc["rank_emd"] == 1
    assert doc["trials"][0]["prototype_match"] is True and doc["trials"][0]["spg_equal"] is True
    assert doc["energy_gap"] is not None and abs(doc["energy_gap"]) < 0.02  # same structure, same potential
    assert doc["reference"]["verdict"] != "failed" and doc["reference"]["energy_per_atom"] < 0


@pytest.mark.slow
def test_flow_tiny_run_resumes_without_duplicates(
    split, structure_dir: Path, store: Store, mongo_uri: str, prefect_harness
) -> None:
    kwargs = dict(
        spec=RecoverySample(n=2, sample_seed=0, fraction=0.25, split_seed=18),
        params=RecoveryParams(k_templates=2, steps=15, seed=0),
        universe=UNIVERSE,
        structure_dir=str(structure_dir),
        mongo_uri=mongo_uri,
        database=store.db.name,
    )
    first = structure_recovery_flow(limit=1, **kwargs)  # stops after one compound, as a killed run would
    assert first["n_qualified"] == 3 and len(first["sample"]) == 2
    assert first["computed"] == 1 and first["done"] == 1
    second = structure_recovery_flow(**kwargs)
    assert second["computed"] == 1 and second["done"] == 2
    third = structure_recovery_flow(**kwargs)
    assert third["computed"] == 0 and third["done"] == 2
    run = first["run"]
    docs = store.recovery_documents(run)
    assert sorted(d["formula"] for d in docs) == first["sample"]
    n_trials = sum(len(d["trials"]) + 1 for d in docs)  # trials + the relaxed known structure
    assert store.db.structures.count_documents({"campaign": run}) == n_trials
    keys = [(d["formula"], d["template_id"]) for d in store.db.structures.find({"campaign": run})]
    assert len(keys) == len(set(keys))
    for d in docs:
        assert all(not split.is_hidden(t["template_formula"] or "") for t in d["trials"])
        # CHGNet's trajectory holds one frame more than the FIRE bound: relax() reports at most steps + 1
        assert d["params"]["steps"] == 15 and all(t["steps"] <= 16 for t in d["trials"])
