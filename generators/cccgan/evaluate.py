"""Evaluation of generated Mg-Mn-O images: validity, novelty (StructureMatcher against the training
set, per reduced formula) and stability (CHGNet relaxation + E_hull against references relaxed by
the same model).

Validity of one image = it decodes to a cell (finite lengths, angles forming a cell), its occupied
rows give exactly the requested atom counts, and the smallest interatomic distance is at least
``min_dist`` (default 1.0 Å; the shortest in the training data is 1.38 Å).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from alcore.errors import StructureError
from alcore.paths import DATA_DIR
from generators.cccgan.representation import (
    counts_formula,
    image_counts,
    image_to_structure,
    min_distance,
    parse_counts,
    reduced_formula,
)

log = logging.getLogger(__name__)

MIN_DIST = 1.0  # Å
METASTABLE = 0.200  # eV/atom
SYNTHESISABLE = 0.080  # eV/atom
REFS_FILE = DATA_DIR / "cccgan" / "chgnet_refs.json"


@dataclass
class Candidate:
    """One generated structure and its evaluation (JSON-able through :meth:`as_dict`)."""

    index: int
    counts: tuple[int, int, int]
    image: np.ndarray
    structure: Structure | None = None
    decodes: bool = False
    composition_ok: bool = False
    min_dist: float | None = None
    valid: bool = False
    reason: str = ""
    novel: bool | None = None
    relaxed: bool = False
    energy_per_atom: float | None = None
    e_hull: float | None = None
    relaxed_structure: Structure | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``invalid``, ``known`` (matches training), ``unrelaxed``, ``unstable``, ``metastable`` or
        ``synthesisable`` (E_hull <= 80 meV/atom)."""
        if not self.valid:
            return "invalid"
        if self.novel is False:
            return "known"
        if self.e_hull is None:
            return "unrelaxed"
        if self.e_hull <= SYNTHESISABLE:
            return "synthesisable"
        if self.e_hull <= METASTABLE:
            return "metastable"
        return "unstable"


def validate(images: np.ndarray, counts: Sequence[int], min_dist: float = MIN_DIST) -> list[Candidate]:
    """Decode and check images ``(n, 30, 3)`` generated for cell composition ``counts``; returns candidates."""
    target = parse_counts(counts)
    found = image_counts(images)
    out = []
    for i, im in enumerate(np.asarray(images)):
        c = Candidate(index=i, counts=target, image=np.asarray(im))
        c.composition_ok = tuple(int(x) for x in found[i]) == target
        try:
            s = image_to_structure(im)
            c.decodes = True
            c.structure = s
            c.min_dist = round(min_distance(s), 4)
        except StructureError as exc:
            c.reason = str(exc)
            out.append(c)
            continue
        if not c.composition_ok:
            c.reason = f"decoded counts {found[i].tolist()} != requested {list(target)}"
        elif c.min_dist < min_dist:
            c.reason = f"atoms {c.min_dist:.2f} Å apart (< {min_dist} Å)"
        else:
            c.valid = True
        out.append(c)
    return out


def training_structures(images: np.ndarray) -> dict[str, list[Structure]]:
    """Decoded training structures ``(N, 30, 3)`` grouped by reduced formula."""
    groups: dict[str, list[Structure]] = {}
    for im in images:
        s = image_to_structure(im)
        groups.setdefault(s.composition.reduced_formula, []).append(s)
    return groups


def _matcher() -> StructureMatcher:
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, scale=True)


def mark_novelty(candidates: Iterable[Candidate], known: dict[str, list[Structure]]) -> None:
    """Set ``novel`` on valid candidates: False if StructureMatcher matches a known structure of the
    same reduced formula or an earlier valid candidate (a repeat), True otherwise."""
    sm = _matcher()
    seen: dict[str, list[Structure]] = {}
    for c in candidates:
        if not c.valid or c.structure is None:
            continue
        f = c.structure.composition.reduced_formula
        pool = known.get(f, [])
        c.novel = not any(sm.fit(c.structure, k) for k in pool)
        if c.novel:
            repeat = any(sm.fit(c.structure, k) for k in seen.get(f, []))
            c.extra["repeat"] = repeat
            if repeat:
                c.novel = False
            else:
                seen.setdefault(f, []).append(c.structure)


def load_references(path: Path | None = None) -> list[dict]:
    """The cached CHGNet reference records (``{name, formula, energy, energy_per_atom, source}``)."""
    path = Path(path or REFS_FILE)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; build it with `python -m generators.cccgan.references`")
    return json.loads(path.read_text())["references"]


def mark_stability(
    candidates: Sequence[Candidate],
    references: list[dict],
    max_relax: int = 10,
    steps: int = 150,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Relax up to ``max_relax`` novel valid candidates with CHGNet and set ``e_hull`` (eV/atom).

    The candidates relaxed are those with the lowest CHGNet single-point energy per atom as
    generated (one batched prediction over all novel valid candidates, stored in
    ``extra["initial_energy_per_atom"]``), so the relaxation budget goes to the most promising
    ones. ``references`` are cached reference records (see :func:`load_references`). A relaxation
    that fails marks the candidate invalid with the reason.
    """
    from generators.cccgan.stability import e_hull, phase_diagram, relax
    from oracles.stability.checker import single_points

    pd = phase_diagram(references)
    pool = [c for c in candidates if c.valid and c.novel]
    if len(pool) > max_relax:
        try:
            energies = single_points([c.structure for c in pool])
        except Exception as exc:  # a structure CHGNet cannot graph: keep the generation order
            log.warning("single-point ranking failed (%s); relaxing in generation order", exc)
            energies = [0.0] * len(pool)
        for c, e in zip(pool, energies, strict=True):
            c.extra["initial_energy_per_atom"] = round(e, 5)
        pool = [
            pool[i]
            for i in sorted(range(len(pool)), key=lambda i: energies[i] if math.isfinite(energies[i]) else math.inf)
        ]
    todo = pool[:max_relax]
    for k, c in enumerate(todo):
        try:
            r = relax(c.structure, steps=steps)
        except StructureError as exc:
            c.valid, c.reason = False, f"relaxation failed: {exc}"
            continue
        c.relaxed = True
        c.relaxed_structure = r.structure
        c.energy_per_atom = round(r.energy_per_atom, 5)
        c.e_hull = round(e_hull(pd, r.structure, r.energy), 5)
        c.extra.update({"relax_steps": r.steps, "relax_converged": r.converged})
        if progress is not None:
            progress(k + 1, len(todo))


def summarise(candidates: Sequence[Candidate]) -> dict[str, Any]:
    """Counts for one composition: generated, decodes, composition_ok, valid, novel, relaxed,
    metastable (E_hull <= 200 meV/atom), synthesisable (<= 80 meV/atom), best E_hull."""
    hulls = [c.e_hull for c in candidates if c.e_hull is not None]
    return {
        "generated": len(candidates),
        "decodes": sum(c.decodes for c in candidates),
        "composition_ok": sum(c.composition_ok for c in candidates),
        "valid": sum(c.valid for c in candidates),
        "novel": sum(bool(c.novel) for c in candidates),
        "relaxed": sum(c.relaxed for c in candidates),
        "metastable": sum(h <= METASTABLE for h in hulls),
        "synthesisable": sum(h <= SYNTHESISABLE for h in hulls),
        "best_e_hull": min(hulls) if hulls else None,
    }


def candidate_doc(c: Candidate, seed: int) -> dict[str, Any]:
    """A MongoDB ``structures`` document body for one candidate (without the campaign)."""
    s = c.relaxed_structure or c.structure
    return {
        "formula": reduced_formula(c.counts),
        "cell_formula": counts_formula(c.counts),
        "template_id": f"cccgan-{seed}-{counts_formula(c.counts)}-{c.index}",
        "generator": "cccgan",
        "seed": seed,
        "index": c.index,
        "image": np.round(c.image, 6).tolist(),
        "structure": s.as_dict() if s is not None else None,
        "generated_structure": c.structure.as_dict() if c.structure is not None else None,
        "cif": s.to(fmt="cif") if s is not None else None,
        "validity": {
            "decodes": c.decodes,
            "composition_ok": c.composition_ok,
            "min_dist": c.min_dist,
            "valid": c.valid,
            "reason": c.reason,
        },
        "novelty": c.novel,
        "relaxed": c.relaxed,
        "energy_per_atom": c.energy_per_atom,
        "e_hull": c.e_hull,
        "verdict": c.verdict,
        **({"relax": c.extra} if c.extra else {}),
    }


def screen_info(candidates: Sequence[Candidate], symprec: float = 0.1) -> dict[str, Any]:
    """Cheap screening figures of one composition's candidates: the median CHGNet single-point energy
    (eV/atom, of the novel valid ones, where :func:`mark_stability` computed them), the median shortest
    distance (Å) of the valid ones, and how many novel valid ones have a space group above P1 at
    ``symprec`` Å (spglib through pymatgen)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sp = [c.extra["initial_energy_per_atom"] for c in candidates if "initial_energy_per_atom" in c.extra]
    dists = [c.min_dist for c in candidates if c.valid and c.min_dist is not None]
    symmetric = 0
    for c in candidates:
        if c.valid and c.novel and c.structure is not None:
            try:
                sg = SpacegroupAnalyzer(c.structure, symprec=symprec).get_space_group_number()
            except Exception:  # noqa: BLE001 - spglib fails on a few distorted cells: count them as P1
                sg = 1
            c.extra["space_group"] = sg
            symmetric += sg > 1
    return {
        "median_sp_energy": float(np.median(sp)) if sp else None,
        "median_min_dist": float(np.median(dists)) if dists else None,
        "novel_above_p1": symmetric,
    }


def distinct_stable(
    candidates: Iterable[Candidate], known: dict[str, list[Structure]], threshold: float = SYNTHESISABLE
) -> list[Candidate]:
    """Relaxed candidates with ``e_hull <= threshold`` (eV/atom) whose *relaxed* structures are distinct
    (StructureMatcher, as :func:`mark_novelty`) from each other and from the training structures of the
    same reduced formula: a relaxation can fall into a known structure or into another candidate's.
    Returns the kept candidates, lowest E_hull first."""
    sm = _matcher()
    kept: list[Candidate] = []
    pool = sorted(
        (c for c in candidates if c.e_hull is not None and c.e_hull <= threshold and c.relaxed_structure is not None),
        key=lambda c: c.e_hull,
    )
    for c in pool:
        s = c.relaxed_structure
        f = s.composition.reduced_formula
        if any(sm.fit(s, k) for k in known.get(f, [])):
            c.extra["relaxed_to_known"] = True
            continue
        if any(sm.fit(s, k.relaxed_structure) for k in kept if k.relaxed_structure.composition.reduced_formula == f):
            continue
        kept.append(c)
    return kept
