"""Prefect flow ``structure-recovery``: does the structure stage rediscover the known structures of hidden compounds?

Issue 18, item 4. A hold-out split by chemical system (:mod:`alcore.holdout`) hides 20 % of the
chemical systems of the MP formula universe. For a seeded random sample of the hidden compounds
that have a known structure with <= ``max_sites`` sites, the structure stage runs as a user would
run it, but on the *visible* template library only:

1. the template library and the known-composition index of the pyxtal fallback are rebuilt without
   any template whose formula is hidden (``TemplateLibrary.without``, ``KnownSpacegroups(exclude_formulas=)``)
   and checked with :func:`alcore.holdout.assert_no_leak`;
2. ``propose_structures`` (EMD-nearest same-anonymised templates, substituted; pyxtal fallback)
   gives ``k_templates`` trials, each relaxed and judged by CHGNet (the default judge when it was measured;
   :class:`oracles.stability.checker.StabilityChecker`);
3. the known structure (from the data set, never from the library used for proposals) is relaxed
   with the same potential and settings;
4. :mod:`oracles.structure_match` matches every relaxed trial against the known structure
   (pymatgen ``StructureMatcher``, default tolerances) and gives the energy gap.

Results: one ``structures`` document per trial and per relaxed reference (``campaign`` = the run
name, ``template_id`` = the trial's or ``"reference:<id>"``) and one document per compound in
``structure_recovery`` keyed by ``(run, formula)``, written last. A rerun skips compounds that have
their document (a killed run resumes; upserts never duplicate).

The known structures come from ``../shared/data/structures`` (``mp_megnet_36k.jsonl.gz``,
``templates_merged.jsonl.gz``), which a user's clone does not have: the flow then fails with a
one-line message naming the folder (``structure_dir`` points elsewhere).
"""

from __future__ import annotations

import gzip
import json
import re
import time
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from alcore.composition import canonical_formula, reduced_counts
from alcore.errors import AlflowError, ConfigError, InvalidFormulaError
from alcore.holdout import HoldoutSplit, assert_no_leak, split_by_chemical_system
from alcore.paths import PROJECT_ROOT
from flows.logs import flow_logger
from flows.store import Store
from generators.templates import MP_SOURCES

SHARED_STRUCTURES = PROJECT_ROOT.parent / "shared" / "data" / "structures"
KNOWN_FILES = ("mp_megnet_36k.jsonl.gz", "templates_merged.jsonl.gz")
#: Sources of structures that count as known (MP-relaxed or experimental; tier 1 in the shared README).
KNOWN_SOURCES = MP_SOURCES | {"amcsd_larixite"}
MODEL_NAME = "chgnet-0.4.2-pretrained"


# ---------------------------------------------------------------------------- the universe and the split
@lru_cache(maxsize=1)
def universe_formulas() -> frozenset[str]:
    """Canonical formulas of the MP data in ``data/``: matbench_mp_gap, matbench_mp_e_form and the known list."""
    import pandas as pd

    from alcore.paths import data_file
    from flows.datasets import band_gap_table, known_formulas

    out = set(band_gap_table("matbench_mp_gap")["formula"]) | set(known_formulas())
    for f in pd.read_csv(data_file("formation", "matbench_mp_e_form.csv"))["formula"].astype(str):
        try:
            out.add(canonical_formula(f))
        except InvalidFormulaError:
            continue
    return frozenset(out)


@lru_cache(maxsize=4)
def default_split(fraction: float = 0.2, seed: int = 0) -> HoldoutSplit:
    """The chemical-system split of :func:`universe_formulas` (cached per process)."""
    return split_by_chemical_system(universe_formulas(), fraction=fraction, seed=seed)


def hidden_library_formulas(formulas: Iterable[str], split: HoldoutSplit) -> set[str]:
    """The distinct formulas of ``formulas`` that ``split`` hides (by formula or by hidden chemical system)."""
    return {f for f in set(map(str, formulas)) if split.is_hidden(f)}


@dataclass
class VisibleStage:
    """The structure stage's inputs rebuilt from the visible side of a split (leak-checked)."""

    split: HoldoutSplit
    library: Any  # generators.templates.TemplateLibrary
    known: Any  # generators.templates.KnownSpacegroups
    n_removed_templates: int
    n_removed_known: int

    def propose(self, formula: str, k: int, fallback_trials: int, seed: int) -> list:
        """Trial structures for ``formula`` from the visible library and fallback index
        (:func:`generators.templates.propose_structures`), their template formulas leak-checked."""
        from generators.templates import propose_structures

        trials = propose_structures(
            formula, self.library, k=k, fallback_trials=fallback_trials, seed=seed, known=self.known
        )
        sources = [t.template.get("formula") or "" for t in trials]
        assert_no_leak(f"templates proposed for {formula}", sources, self.split)
        return trials


def visible_stage(split: HoldoutSplit, library=None, known_path: Path | None = None) -> VisibleStage:
    """Template library and fallback index without hidden formulas; raises ``HoldoutLeakError`` if one remains."""
    from generators.templates import KNOWN_PATH, KnownSpacegroups, TemplateLibrary

    full = library if library is not None else TemplateLibrary.load()
    lib = full.without(hidden_library_formulas(full.formulas, split))
    assert_no_leak("template library (visible)", lib.formulas, split)
    full_known = KnownSpacegroups(known_path or KNOWN_PATH)
    known = KnownSpacegroups(
        known_path or KNOWN_PATH, exclude_formulas=hidden_library_formulas(full_known.formulas, split)
    )
    assert_no_leak("known compositions of the pyxtal fallback (visible)", known.formulas, split)
    return VisibleStage(split, lib, known, len(full) - len(lib), len(full_known.formulas) - len(known.formulas))


# ---------------------------------------------------------------------------- known structures
@dataclass
class KnownStructure:
    """A known structure of a compound from the data set: ``cif`` text, id, source, space group (spglib,
    symprec 0.1), sites, DFT formation energy (eV/atom, None if the source has none), MP id."""

    formula: str
    id: str
    source: str
    spg: int
    nsites: int
    e_form_dft: float | None
    mpid: str | None
    cif: str = field(repr=False)

    def structure(self):
        """The structure as pymatgen parses the CIF (no primitive reduction)."""
        from pymatgen.io.cif import CifParser

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return CifParser.from_str(self.cif).parse_structures(primitive=False)[0]


def choose_reference(records: list[KnownStructure]) -> KnownStructure:
    """The known structure of a compound among its records: the lowest DFT formation energy where the
    source gives one (MP's ground state), else MP-derived before experimental (AMCSD), then fewer sites, then id."""
    with_e = [r for r in records if r.e_form_dft is not None and np.isfinite(r.e_form_dft)]
    if with_e:
        return min(with_e, key=lambda r: (r.e_form_dft, r.nsites, r.id))
    return min(records, key=lambda r: (r.source == "amcsd_larixite", r.nsites, r.id))


_FOLDER_FORMULA = re.compile(r"(?:^|[:/])CIFs/([A-Za-z0-9().]+)/")


def record_problem(record_id: str, formula: str) -> str | None:
    """Why a data-set record cannot serve as the known structure of ``formula``, or None if it can.

    Records whose id names the compound they were cut from (``.../CIFs/<formula>/...``, the
    curie_neel MP set) must name ``formula``: 2,101 of its 4,727 records are magnetic-sublattice CIFs
    (``*_mag.cif``) that lack the non-magnetic atoms, e.g. ``CIFs/SmPd2Cd20/SmPd2Cd20_0_mag.cif`` holds
    "SmPd2" at 169 Å^3/atom.
    """
    m = _FOLDER_FORMULA.search(record_id)
    if m is None:
        return None
    try:
        named = canonical_formula(m.group(1))
    except InvalidFormulaError:
        return f"record id names an unparsable compound {m.group(1)!r}"
    return None if named == formula else f"record of {named}, not {formula} (a sublattice of another compound)"


def load_known_structures(
    split: HoldoutSplit, structure_dir: Path | None = None, stats: dict[str, int] | None = None
) -> dict[str, list[KnownStructure]]:
    """Known (MP-relaxed or experimental) structures of the split's hidden formulas, from the data sets.

    Reads ``mp_megnet_36k.jsonl.gz`` and ``templates_merged.jsonl.gz`` (records of :data:`KNOWN_SOURCES`,
    ordered, any size) in ``structure_dir`` (default ``../shared/data/structures``). Returns
    ``{formula: [records]}`` for formulas in ``split.hidden``; records that :func:`record_problem` rejects are
    skipped (counted in ``stats["inconsistent"]`` when a dict is given). Raises :class:`ConfigError` when the
    folder is missing (a user's clone has no ../shared).
    """
    folder = Path(structure_dir) if structure_dir else SHARED_STRUCTURES
    missing = [n for n in KNOWN_FILES if not (folder / n).exists()]
    if missing:
        raise ConfigError(
            f"structure recovery needs {', '.join(missing)} in {folder} (the team's ../shared/data/structures); "
            "pass structure_dir"
        )
    out: dict[str, list[KnownStructure]] = {}
    seen: set[str] = set()
    for name in KNOWN_FILES:
        with gzip.open(folder / name, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                if r.get("source") not in KNOWN_SOURCES or not r.get("ordered", True):
                    continue
                try:
                    f = canonical_formula(r["reduced_formula"])
                except (InvalidFormulaError, KeyError):
                    continue
                if f not in split.hidden:
                    continue
                if record_problem(r["id"], f) is not None:
                    if stats is not None:
                        stats["inconsistent"] = stats.get("inconsistent", 0) + 1
                    continue
                props = r.get("props") or {}
                mpid = props.get("material_id")
                key = f"{f}|{mpid or r['id']}"
                if key in seen:  # the same MP material in both files
                    continue
                seen.add(key)
                ef = props.get("e_form_per_atom")
                out.setdefault(f, []).append(
                    KnownStructure(
                        formula=f,
                        id=r["id"],
                        source=r["source"],
                        spg=int(r.get("spg") or 0),
                        nsites=int(r["nsites"]),
                        e_form_dft=float(ef) if ef is not None else None,
                        mpid=mpid,
                        cif=r["cif"],
                    )
                )
    return out


def qualified_references(known: dict[str, list[KnownStructure]], max_sites: int = 20) -> dict[str, KnownStructure]:
    """``{formula: reference}`` for compounds whose chosen known structure has <= ``max_sites`` sites."""
    out = {}
    for f, recs in known.items():
        ref = choose_reference(recs)
        if ref.nsites <= max_sites:
            out[f] = ref
    return out


def sample_formulas(formulas: Iterable[str], n: int, seed: int = 0) -> list[str]:
    """A seeded uniform sample (without replacement) of ``n`` of the sorted ``formulas`` (all if fewer)."""
    pool = sorted(set(formulas))
    if n >= len(pool):
        return pool
    rng = np.random.default_rng(seed)
    return sorted(str(x) for x in rng.choice(pool, size=n, replace=False))


def schedule_order(sample: Iterable[str], seed: int = 0) -> list[str]:
    """The order in which a run works through its sample: a seeded permutation of the sorted formulas.

    Random rather than smallest-cell-first, so that the compounds done when a run is stopped early are
    themselves a uniform random sub-sample (no bias towards small, fast cells).
    """
    pool = sorted(set(sample))
    return [pool[i] for i in np.random.default_rng([seed, 1]).permutation(len(pool))]


@dataclass(frozen=True)
class RecoverySample:
    """Which hidden compounds a run works on: the chemical-system split hiding ``fraction`` of the
    systems (seed ``split_seed``), its hidden compounds with a known structure of at most ``max_sites``
    sites, and ``n`` of those drawn with ``sample_seed``."""

    n: int = 200
    sample_seed: int = 0
    fraction: float = 0.2
    split_seed: int = 0
    max_sites: int = 20


def plan(
    spec: RecoverySample = RecoverySample(),
    structure_dir: str | Path | None = None,
    universe: Iterable[str] | None = None,
) -> tuple[HoldoutSplit, dict[str, KnownStructure], list[str]]:
    """``(split, qualified references {formula: known structure}, sample)`` of a run (no relaxation).

    ``universe`` None splits the MP formula universe (:func:`universe_formulas`), else the given formulas.
    """
    if universe is None:
        split = default_split(spec.fraction, spec.split_seed)
    else:
        split = split_by_chemical_system(universe, spec.fraction, spec.split_seed)
    known = load_known_structures(split, Path(structure_dir) if structure_dir else None)
    refs = qualified_references(known, spec.max_sites)
    return split, refs, sample_formulas(refs, spec.n, spec.sample_seed)


# ---------------------------------------------------------------------------- one compound
@dataclass(frozen=True)
class RecoveryParams:
    """Settings of a run: templates per compound, fallback trials, FIRE ``fmax`` (eV/Å) and ``steps``, seed."""

    k_templates: int = 3
    fallback_trials: int = 3
    fmax: float = 0.1
    steps: int = 200
    seed: int = 0
    n_random_baseline: int = 3

    def key(self) -> str:
        """Short tag naming the settings in the run name."""
        return f"k{self.k_templates}-fmax{self.fmax:g}-st{self.steps}-seed{self.seed}"


@lru_cache(maxsize=4)
def _checker(fmax: float, steps: int):
    from oracles.stability.checker import StabilityChecker, get_model

    return StabilityChecker(model=get_model(threads=1), fmax=fmax, steps=steps, compute_hull=False)


def _random_templates(library, formula: str, n: int, seed: int) -> list[int]:
    """``n`` uniformly random rows of same-anonymised-formula templates (seeded per formula), the naive baseline."""
    from generators.templates import anonymised_key

    rows = library.rows_with_anon(anonymised_key(formula))
    if len(rows) == 0:
        return []
    rng = np.random.default_rng([seed, zlib.crc32(formula.encode())])
    return [int(r) for r in rng.choice(rows, size=min(n, len(rows)), replace=False)]


def recover_compound(
    run: str, formula: str, reference: KnownStructure, stage: VisibleStage, params: RecoveryParams
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the structure stage on one hidden compound and judge it against its known structure.

    Returns ``(structures documents, structure_recovery document)``. Never raises for a bad structure:
    failed trials stay in the lists with their reason and count as unmatched.
    """
    from flows.pipelines.structures import judge_trial, verdict_doc
    from generators.templates import Trial, anonymised_key, substitute
    from oracles.structure_match import energy_gap, energy_order, first_match_rank, make_matcher, match_structure

    t0 = time.perf_counter()
    checker = _checker(params.fmax, params.steps)
    matcher = make_matcher()
    known = reference.structure()
    trials = stage.propose(formula, params.k_templates, params.fallback_trials, params.seed)

    verdicts = [judge_trial(checker, t) for t in trials]
    ref_trial = Trial(
        formula,
        f"reference:{reference.mpid or reference.id}",
        known,
        {
            "id": reference.id,
            "formula": formula,
            "source": reference.source,
            "spg": reference.spg,
            "mpid": reference.mpid,
        },
    )
    ref_verdict = judge_trial(checker, ref_trial)
    ref_relaxed = ref_verdict.structure if ref_verdict.verdict != "failed" else None
    docs = [verdict_doc(run, t, v) for t, v in zip(trials, verdicts, strict=True)] + [
        verdict_doc(run, ref_trial, ref_verdict)
    ]

    rows = []
    for i, (t, v) in enumerate(zip(trials, verdicts, strict=True)):
        relaxed = v.structure if v.verdict != "failed" else None
        m = match_structure(relaxed, known, matcher)
        m_ref = match_structure(relaxed, ref_relaxed, matcher) if ref_relaxed is not None else None
        m0 = match_structure(t.structure, known, matcher)
        proto = None
        if t.template.get("source") != "pyxtal_random" and t.structure is not None:
            try:
                proto = bool(matcher.fit_anonymous(stage.library.template(t.template_id).structure(), known))
            except Exception:
                proto = None
        rows.append(
            {
                "emd_rank": i + 1,
                "template_id": t.template_id,
                "template_formula": t.template.get("formula"),
                "template_source": t.template.get("source"),
                "template_spg": t.template.get("spg"),
                "template_mpid": t.template.get("mpid"),
                "emd": t.template.get("emd"),
                "spg_equal": t.template.get("spg") == reference.spg,
                "prototype_match": proto,
                "verdict": v.verdict,
                "reason": v.reason,
                "energy_per_atom": v.energy_per_atom if np.isfinite(v.energy_per_atom) else None,
                "e_form": v.e_form if np.isfinite(v.e_form) else None,
                "steps": v.steps,
                "converged": v.converged,
                "seconds": v.seconds,
                "match": m.match,
                "rms": m.rms,
                "match_reason": m.reason,
                "match_relaxed_reference": None if m_ref is None else m_ref.match,
                "match_unrelaxed": m0.match,
            }
        )
    energies = [r["energy_per_atom"] for r in rows]
    order = energy_order(energies)
    for rank, i in enumerate(order, start=1):
        rows[i]["energy_rank"] = rank
    matched = [r["match"] for r in rows]
    ref_e = ref_verdict.energy_per_atom if ref_verdict.verdict != "failed" else None
    best = order[0] if rows and energies[order[0]] is not None else None

    # the naive baseline: uniformly random visible templates of the same anonymised formula, unrelaxed,
    # beside the EMD templates unrelaxed (no relaxation needed for either)
    rand_rows = _random_templates(stage.library, formula, params.n_random_baseline, params.seed)
    rand_match = []
    for r in rand_rows:
        try:
            s = substitute(stage.library.template(r), formula).structure
        except Exception:
            s = None
        rand_match.append(match_structure(s, known, matcher).match)

    doc = {
        "run": run,
        "formula": formula,
        "n_elements": len(reduced_counts(formula)),
        "anonymised": anonymised_key(formula),
        "reference": {
            "id": reference.id,
            "source": reference.source,
            "mpid": reference.mpid,
            "spg": reference.spg,
            "nsites": reference.nsites,
            "e_form_dft": reference.e_form_dft,
            "energy_per_atom": ref_e,
            "e_form": ref_verdict.e_form if np.isfinite(ref_verdict.e_form) else None,
            "verdict": ref_verdict.verdict,
            "reason": ref_verdict.reason,
            "steps": ref_verdict.steps,
            "converged": ref_verdict.converged,
            "seconds": ref_verdict.seconds,
        },
        "fallback": bool(trials) and trials[0].template.get("source") == "pyxtal_random",
        "trials": rows,
        "rank_energy": first_match_rank(matched, order),
        "rank_emd": first_match_rank(matched),
        "rank_relaxed_reference": first_match_rank([bool(r["match_relaxed_reference"]) for r in rows], order),
        "rank_unrelaxed_emd": first_match_rank([r["match_unrelaxed"] for r in rows]),
        "rank_random_unrelaxed": first_match_rank(rand_match),
        "n_random_templates": len(rand_match),
        "prototype_in_templates": any(bool(r["prototype_match"]) for r in rows),
        "best_template_prototype_match": None if best is None else rows[best]["prototype_match"],
        "best_template_spg_equal": None if best is None else rows[best]["spg_equal"],
        "energy_gap": energy_gap(energies, ref_e),
        "model": MODEL_NAME,
        "params": params.__dict__,
        "seconds": time.perf_counter() - t0,
    }
    return docs, doc


@task(name="recover-compound", cache_policy=NO_CACHE)
def recover_task(
    run: str, formula: str, reference: KnownStructure, stage: VisibleStage, params: RecoveryParams
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prefect task around :func:`recover_compound`."""
    return recover_compound(run, formula, reference, stage, params)


def run_name(split: HoldoutSplit, params: RecoveryParams) -> str:
    """Name of a run (the ``campaign`` of its ``structures`` docs, the ``run`` of its compound docs)."""
    return f"recovery:{split.protocol}-f{split.fraction:g}-s{split.seed}:{params.key()}"


def done_formulas(store: Store, run: str, references: dict[str, KnownStructure] | None = None) -> set[str]:
    """Formulas of ``run`` that already have their compound document (judged against the same known
    structure as in ``references``, when given: a document made against another record is redone)."""
    out = set()
    for d in store.recovery_documents(run):
        f = d["formula"]
        if references is None or (f in references and d.get("reference", {}).get("id") == references[f].id):
            out.add(f)
    return out


def compound_documents(store: Store, run: str, formulas: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The compound documents of ``run`` (optionally only ``formulas``), sorted by formula, without ``_id``."""
    return store.recovery_documents(run, None if formulas is None else list(formulas))


# ---------------------------------------------------------------------------- the flow
@flow(name="structure-recovery", task_runner=ThreadPoolTaskRunner(max_workers=2), validate_parameters=False)
def structure_recovery_flow(
    spec: RecoverySample = RecoverySample(),
    params: RecoveryParams | None = None,
    formulas: list[str] | None = None,
    structure_dir: str | None = None,
    mongo_uri: str | None = None,
    database: str = "alflow",
    universe: list[str] | None = None,
    library_path: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Structure recovery on ``spec.n`` hidden compounds (seeded sample); resumable. Returns a summary dict.

    ``params`` are the structure stage's settings (default :class:`RecoveryParams` with the sample's
    seed). ``formulas`` replaces the sample (they must be qualified hidden compounds). ``universe`` (formulas to
    split; default the MP universe), ``library_path`` (a template library file; default the committed one)
    and ``structure_dir`` (known structures; default ../shared/data/structures) let tests run small.
    ``limit`` stops after that many new compounds (to size a run). The summary holds ``run``,
    ``n_qualified``, ``sample`` (formulas), ``done`` (compounds with a document), ``computed`` (this call),
    leak-check counts and ``seconds``.
    """
    from tqdm import tqdm

    logger = flow_logger()
    t0 = time.perf_counter()
    split, refs, sample = plan(spec, structure_dir, universe)
    params = params or RecoveryParams(seed=spec.sample_seed)
    run = run_name(split, params)
    if formulas is not None:
        sample = sorted({canonical_formula(f) for f in formulas})
        bad = [f for f in sample if f not in refs]
        if bad:
            raise ConfigError(f"not hidden compounds with a known structure of <= {spec.max_sites} sites: {bad[:10]}")
    from generators.templates import TemplateLibrary

    stage = visible_stage(split, TemplateLibrary.load(library_path) if library_path else None)
    logger.info(
        "%s: %d qualified hidden compounds, sample %d; visible library %d templates (%d hidden removed)",
        run,
        len(refs),
        len(sample),
        len(stage.library),
        stage.n_removed_templates,
    )
    store = Store.open(mongo_uri, database)
    try:
        done = done_formulas(store, run, refs)
        todo = [f for f in sample if f not in done]
        # work in a seeded random order, so that a run stopped early has done a uniform sub-sample
        order = {f: i for i, f in enumerate(schedule_order(sample, spec.sample_seed))}
        todo.sort(key=order.__getitem__)
        if limit is not None:
            todo = todo[:limit]
        logger.info("%d already done, %d to compute", len(sample) - len(todo), len(todo))
        futures = [recover_task.submit(run, f, refs[f], stage, params) for f in todo]
        computed = 0
        for fut in tqdm(as_completed(futures), total=len(futures), desc="structure recovery", unit="compound"):
            docs, doc = fut.result()
            store.upsert_structures(docs)  # trial + reference documents first ...
            store.upsert_recovery_document(run, doc)  # ... the compound document last: it marks it done
            computed += 1
            logger.info(
                "%s: rank %s (EMD order %s), gap %s eV/atom, %.0f s",
                doc["formula"],
                doc["rank_energy"],
                doc["rank_emd"],
                None if doc["energy_gap"] is None else round(doc["energy_gap"], 3),
                doc["seconds"],
            )
        return {
            "run": run,
            "n_qualified": len(refs),
            "sample": sample,
            "done": len(done_formulas(store, run, refs) & set(sample)),
            "computed": computed,
            "visible_templates": len(stage.library),
            "removed_templates": stage.n_removed_templates,
            "removed_known": stage.n_removed_known,
            "seconds": time.perf_counter() - t0,
        }
    finally:
        store.close()


def run_structure_recovery(workers: int = 2, **kwargs: Any) -> dict[str, Any]:
    """Run :func:`structure_recovery_flow` with ``workers`` threads; keyword arguments go to the flow."""
    if workers < 1:
        raise ConfigError("workers must be >= 1")
    return structure_recovery_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(**kwargs)


__all__ = [
    "AlflowError",
    "KnownStructure",
    "RecoveryParams",
    "RecoverySample",
    "choose_reference",
    "compound_documents",
    "load_known_structures",
    "qualified_references",
    "recover_compound",
    "run_structure_recovery",
    "sample_formulas",
    "structure_recovery_flow",
    "universe_formulas",
    "visible_stage",
]
