"""Template substitution: a crystal structure for a candidate formula from its EMD-nearest template.

The library (``data/structures/templates.jsonl.gz``, built by ``data/structures/build_templates.py``;
sources and licences in ``data/structures/README.md``) holds ordered structures of known compounds.
For a candidate formula we take the templates with the same anonymised formula (the sorted reduced
counts, e.g. ``"1-1-3"`` for ABX3), rank them by Element Mover's Distance (mod_petti) to the
candidate, map the candidate's elements onto the template's by role (within each group of equal
count, both sorted by mod_petti position: the optimal 1-D assignment), substitute, and rescale the
cell volume by the ratio of summed atomic volumes. When no template shares the anonymised formula,
:func:`random_symmetric` builds random structures (pyxtal) in the space group of the EMD-nearest
known composition (``data/known/mp_formulas_spacegroups.csv``) with the same number of elements.

The index (formulas, anonymised keys, EMD sparse profiles) is cached in an ``.npz`` beside the
library and loads in well under a second; structures are parsed only when asked for.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from alcore.composition import canonical_formula, canonical_set, reduced_counts
from alcore.errors import StructureError
from alcore.paths import DATA_DIR
from generators.emd import MOD_PETTI, EMDIndex, padded_profiles

log = logging.getLogger(__name__)

TEMPLATES_PATH = DATA_DIR / "structures" / "templates.jsonl.gz"
KNOWN_PATH = DATA_DIR / "known" / "mp_formulas_spacegroups.csv"
KMAX = 8  # most elements per composition the index holds
#: Sources of MP-relaxed structures in the shared structure data (tier 1 of ../shared/data/structures).
MP_SOURCES = frozenset(
    {
        "mp_kdmsit_megnet",
        "magnetic_curie_neel_mpcifs",
        "mp_3dsc_raw",
        "mp40_test_chemeleon",
        "mp_cgcnn_me228_sparsh",
        "mp_kdmsit_elasticity",
        "camd_mp_test_data",
        "matbench_phonons_aviary",
        "smact_test_db",
        "cspml_90_test",
        "robocrys_minerals",
    }
)
#: Preference among equally near templates: experimental/MP-relaxed first, then OQMD, then prototypes.
SOURCE_TIER = {"amcsd_larixite": 1, "oqmd_ternaries_jhamlin": 2, "aflow_prototypes": 3}  # others (MP): 0


def anonymised_key(formula: str) -> str:
    """Anonymised formula of the reduced composition as sorted counts, e.g. ``"SrTiO3" -> "1-1-3"``."""
    return "-".join(str(c) for c in sorted(n for _, n in reduced_counts(formula)))


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Template:
    """One library structure: id, reduced formula, source, space group, MP id (if any) and geometry."""

    tid: str
    formula: str
    source: str
    spg: int
    mpid: str | None
    lattice: np.ndarray  # (3, 3) Å, row vectors
    species: list[str]  # per site
    frac: np.ndarray  # (n, 3) fractional coordinates

    def structure(self) -> Structure:
        """The template as a pymatgen Structure."""
        return Structure(Lattice(self.lattice), self.species, self.frac)


@dataclass
class Trial:
    """A candidate structure (or the reason there is none) with its provenance.

    ``template`` is ``{id, formula, source, emd, spg, mpid}``; ``mapping`` maps each candidate
    element to the template element whose sites it took. ``structure`` is None when ``reason`` says
    why no structure could be made.
    """

    formula: str
    template_id: str
    structure: Structure | None
    template: dict[str, Any]
    mapping: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def failed(cls, formula: str, reason: str, template: dict[str, Any] | None = None) -> Trial:
        """A trial without a structure: ``reason`` says why; ``template`` is what was tried (its ``id``
        names the trial; default: nothing, id ``"none"``)."""
        template = template or {"id": "none", "formula": "", "source": "", "emd": float("nan")}
        return cls(formula, template["id"], None, template, reason=reason)


class TemplateLibrary:
    """The template library with its EMD index; structures are parsed lazily.

    ``TemplateLibrary.load()`` reads the committed library (and its ``.npz`` index cache, rebuilt if
    missing or stale). Arrays: ``formulas``, ``anon``, ``tids``, ``sources``, ``spg``, ``nsites`` (N,).
    """

    def __init__(
        self,
        path: Path,
        formulas: np.ndarray,
        anon: np.ndarray,
        tids: np.ndarray,
        sources: np.ndarray,
        spg: np.ndarray,
        nsites: np.ndarray,
        positions: np.ndarray,
        cumfrac: np.ndarray,
        e_form_dft: np.ndarray,
    ) -> None:
        self.path = path
        self.formulas = formulas
        self.anon = anon
        self.tids = tids
        self.sources = sources
        self.spg = spg
        self.nsites = nsites
        self.e_form_dft = e_form_dft  # (N,) DFT formation energy from the source (NaN if none), eV/atom
        self.tier = np.array([SOURCE_TIER.get(str(x), 0) for x in sources], np.int8)
        ef = np.where(np.isfinite(e_form_dft), e_form_dft, 99.0)
        # rank key among equally near templates: tier, DFT formation energy (ground state first), sites
        self.preference = np.lexsort((nsites, ef, self.tier)).argsort()
        self.emd_index = EMDIndex(positions, cumfrac)
        self._lines: list[bytes] | None = None
        self._line_of: np.ndarray | None = None  # library row -> line of the file (set by :meth:`without`)
        self._tid_row = {t: i for i, t in enumerate(tids)}
        self._by_anon: dict[str, np.ndarray] = {}
        order = np.argsort(anon, kind="stable")
        keys, starts = np.unique(anon[order], return_index=True)
        bounds = list(starts) + [len(order)]
        for j, key in enumerate(keys):
            self._by_anon[str(key)] = np.sort(order[bounds[j] : bounds[j + 1]])

    def __len__(self) -> int:
        return len(self.formulas)

    @classmethod
    def load(
        cls, path: Path | str | None = None, cache: bool = True, exclude_formulas: Iterable[str] | None = None
    ) -> TemplateLibrary:
        """Load the library at ``path`` (default: the committed one) using/refreshing its npz index.

        ``exclude_formulas``: reduced formulas whose templates are left out (e.g. the hidden formulas
        of a hold-out split, see :meth:`without`); None (default) keeps every template.
        """
        lib = cls._load(path, cache)
        return lib.without(exclude_formulas) if exclude_formulas is not None else lib

    def without(self, formulas: Iterable[str]) -> TemplateLibrary:
        """A library without the templates whose reduced formula is in ``formulas`` (canonicalised).

        Shares the file with this one (structures stay lazy); its EMD index, anonymised-formula
        groups and tie-break order are rebuilt over the kept rows, so a search can never return a
        removed template. ``len(result)`` is the number of kept templates.
        """
        drop = canonical_set(formulas)
        keep = np.flatnonzero(~np.isin(self.formulas, np.array(sorted(drop), dtype=self.formulas.dtype)))
        lib = TemplateLibrary(
            self.path,
            self.formulas[keep],
            self.anon[keep],
            self.tids[keep],
            self.sources[keep],
            self.spg[keep],
            self.nsites[keep],
            self.emd_index.positions[keep],
            self.emd_index.cumfrac[keep],
            self.e_form_dft[keep],
        )
        lib._line_of = keep if self._line_of is None else self._line_of[keep]
        lib._lines = self._lines
        return lib

    @classmethod
    def _load(cls, path: Path | str | None = None, cache: bool = True) -> TemplateLibrary:
        path = Path(path) if path is not None else TEMPLATES_PATH
        if not path.exists():
            raise StructureError(
                f"template library {path} is missing; it ships in data/structures/ "
                "(rebuild with data/structures/build_templates.py)"
            )
        npz = path.with_suffix("").with_suffix(".index.npz")
        sha = _file_sha(path)
        if npz.exists():
            try:
                z = np.load(npz, allow_pickle=False)
                if str(z["sha256"]) == sha:
                    return cls(
                        path,
                        z["formulas"],
                        z["anon"],
                        z["tids"],
                        z["sources"],
                        z["spg"],
                        z["nsites"],
                        z["positions"],
                        z["cumfrac"],
                        z["e_form_dft"],
                    )
            except Exception as exc:  # corrupt cache: rebuild
                log.warning("template index cache %s unreadable (%s); rebuilding", npz, exc)
        cols: dict[str, list] = {k: [] for k in ("f", "tid", "src", "spg", "nsites", "ef")}
        with gzip.open(path, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                for k in cols:
                    cols[k].append(r.get(k))
        formulas = np.array(cols["f"])
        anon = np.array([anonymised_key(f) for f in formulas])
        positions, cumfrac = padded_profiles(list(formulas), kmax=KMAX)
        arrays = dict(
            formulas=formulas,
            anon=anon,
            tids=np.array(cols["tid"]),
            sources=np.array(cols["src"]),
            spg=np.array(cols["spg"], np.int16),
            nsites=np.array(cols["nsites"], np.int16),
            positions=positions.astype(np.int16),
            cumfrac=cumfrac,
            e_form_dft=np.array([np.nan if x is None else x for x in cols["ef"]], float),
        )
        if cache:
            try:
                np.savez_compressed(npz, sha256=np.array(sha), **arrays)
            except OSError as exc:
                log.warning("cannot write template index cache %s: %s", npz, exc)
        return cls(path, **arrays)

    def _raw(self, row: int) -> dict[str, Any]:
        if self._lines is None:
            with gzip.open(self.path, "rb") as fh:
                self._lines = fh.read().splitlines()
        return json.loads(self._lines[row if self._line_of is None else int(self._line_of[row])])

    def template(self, row_or_tid: int | str) -> Template:
        """The parsed template at a row index or with a template id (``"T01234"``)."""
        row = self._tid_row[row_or_tid] if isinstance(row_or_tid, str) else int(row_or_tid)
        r = self._raw(row)
        return Template(
            tid=r["tid"],
            formula=r["f"],
            source=r["src"],
            spg=int(r["spg"]),
            mpid=r.get("mpid"),
            lattice=np.array(r["lat"], float).reshape(3, 3),
            species=[r["els"][i] for i in r["sp"]],
            frac=np.array(r["xyz"], float).reshape(-1, 3),
        )

    def rows_with_anon(self, key: str) -> np.ndarray:
        """Row indices of templates whose anonymised formula is ``key`` (e.g. ``"1-1-3"``)."""
        return self._by_anon.get(key, np.zeros(0, np.int64))

    def _group_index(self, key: str, rows: np.ndarray) -> EMDIndex:
        """EMD index of the templates with anonymised formula ``key`` (built once, kept)."""
        cache = self.__dict__.setdefault("_group_indexes", {})
        if key not in cache:
            cache[key] = EMDIndex(self.emd_index.positions[rows], self.emd_index.cumfrac[rows])
        return cache[key]

    def search(self, formula: str, k: int = 5) -> list[tuple[int, float]]:
        """Up to ``k`` ``(row, emd)`` of same-anonymised-formula templates, nearest (EMD) first.

        Ties (equal EMD, e.g. polymorphs of the formula itself) go to MP/experimental sources first,
        then the lowest DFT formation energy the source gives, then fewer sites. Returns [] when no
        template shares the key.
        """
        return self.search_many([formula], k=k)[0]

    def search_many(self, formulas: Sequence[str], k: int = 5) -> list[list[tuple[int, float]]]:
        """:meth:`search` for many formulas (grouped by anonymised formula); one list per formula."""
        from generators.emd import cumulative_vectors

        out: list[list[tuple[int, float]]] = [[] for _ in formulas]
        keys = [anonymised_key(f) for f in formulas]
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        for key, idxs in groups.items():
            rows = self.rows_with_anon(key)
            if len(rows) == 0:
                continue
            q = cumulative_vectors([formulas[i] for i in idxs])
            if len(rows) > 64:
                index = self._group_index(key, rows)
                d = index.distances_cum(q)
            else:
                d = _dense_from_profiles(q, self.emd_index.positions[rows], self.emd_index.cumfrac[rows])
            pref = self.preference[rows]
            kk = min(k, len(rows))
            for j, i in enumerate(idxs):
                dj = np.round(d[j], 12)
                if kk < len(rows):  # all rows as near as the k-th, so that ties are broken consistently
                    kth = np.partition(dj, kk - 1)[kk - 1]
                    sel = np.flatnonzero(dj <= kth)
                else:
                    sel = np.arange(len(rows))
                part = sel[np.lexsort((pref[sel], dj[sel]))][:k]
                out[i] = [(int(rows[p]), float(d[j][p])) for p in part]
        return out


def _dense_from_profiles(qcum: np.ndarray, positions: np.ndarray, cumfrac: np.ndarray) -> np.ndarray:
    """(Q, M) EMD from cumulative query rows to padded sparse profiles (dense L1, exact)."""
    m = len(positions)
    lib = np.zeros((m, 104))
    valid = positions >= 0
    rows = np.repeat(np.arange(m), positions.shape[1]).reshape(positions.shape)
    # increments at each position: diff of cumulative fractions
    inc = np.diff(np.concatenate([np.zeros((m, 1)), cumfrac], axis=1), axis=1)
    np.add.at(lib, (rows[valid], positions[valid].astype(np.int64)), inc[valid])
    lib = np.cumsum(lib[:, :103], axis=1)
    return (
        np.abs(qcum[:, None, :] - lib[None, :, :]).sum(-1)
        if m * len(qcum) < 2_000_000
        else np.vstack([np.abs(q[None, :] - lib).sum(-1) for q in qcum])
    )


# ---------------------------------------------------------------------------- substitution
def role_mapping(candidate: str, template_formula: str) -> dict[str, str]:
    """Map candidate elements to template elements by role.

    Elements are grouped by reduced count; within a group both sides are sorted by mod_petti
    position and paired in order (the EMD-optimal assignment on the 1-D scale). Returns
    ``{candidate_element: template_element}``. Raises :class:`StructureError` if the anonymised
    formulas differ.
    """
    a = dict(reduced_counts(candidate))
    b = dict(reduced_counts(template_formula))
    if sorted(a.values()) != sorted(b.values()):
        raise StructureError(f"{candidate} and template {template_formula} have different anonymised formulas")
    mapping: dict[str, str] = {}
    for count in sorted(set(a.values())):
        ca = sorted((e for e, n in a.items() if n == count), key=lambda e: MOD_PETTI[e])
        cb = sorted((e for e, n in b.items() if n == count), key=lambda e: MOD_PETTI[e])
        mapping.update(zip(ca, cb, strict=True))
    return mapping


@lru_cache(maxsize=256)
def atomic_volume(symbol: str) -> float:
    """Approximate atomic volume (Å^3) of an element: 4/3 pi r^3 with pymatgen's atomic radius."""
    el = Element(symbol)
    r = el.atomic_radius or el.atomic_radius_calculated or 1.5
    return 4.0 / 3.0 * np.pi * float(r) ** 3


def substitute(template: Template, candidate: str, emd_distance: float = float("nan")) -> Trial:
    """Put the candidate's elements on the template's sites and rescale the volume.

    The volume is scaled by ``sum(V_atom new) / sum(V_atom old)`` over the sites. Returns a
    :class:`Trial` whose structure has the candidate's composition (a multiple of its reduced formula).
    """
    formula = canonical_formula(candidate)
    mapping = role_mapping(formula, template.formula)
    inverse = {t: c for c, t in mapping.items()}
    species = [inverse[s] for s in template.species]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Structure(Lattice(template.lattice), species, template.frac)
        old = sum(atomic_volume(e) for e in template.species)
        new = sum(atomic_volume(e) for e in species)
        s.scale_lattice(s.volume * new / old)
    return Trial(
        formula=formula,
        template_id=template.tid,
        structure=s,
        template={
            "id": template.tid,
            "formula": template.formula,
            "source": template.source,
            "emd": float(emd_distance),
            "spg": template.spg,
            "mpid": template.mpid,
        },
        mapping=mapping,
    )


# ---------------------------------------------------------------------------- fallback
class SpacegroupSource(NamedTuple):
    """A known composition whose space group a random structure borrows: its ``formula``, space group
    number ``spg`` (1-230) and Element Mover's ``emd`` to the target composition (nan: none given)."""

    formula: str
    spg: int
    emd: float = float("nan")


class KnownSpacegroups:
    """EMD index over the known MP formulas with their space groups (for the pyxtal fallback).

    ``exclude_formulas`` (e.g. the hidden formulas of a hold-out split) are left out of the index.
    """

    def __init__(self, path: Path = KNOWN_PATH, exclude_formulas: Iterable[str] | None = None) -> None:
        self._exclude = set(canonical_formula(str(f)) for f in exclude_formulas) if exclude_formulas else set()
        cache = TEMPLATES_PATH.with_name("known_index.npz")
        sha = _file_sha(path)
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            if str(z["sha256"]) == sha:
                self._set(z["formulas"], z["spg"], z["positions"], z["cumfrac"])
                return
        seen: dict[str, int] = {}
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    f = canonical_formula(row["pretty_formula"])
                    if len(reduced_counts(f)) > KMAX or any(e not in MOD_PETTI for e, _ in reduced_counts(f)):
                        continue
                except Exception:
                    continue
                seen.setdefault(f, int(row["spacegroup"]))  # first polymorph listed
        formulas = np.array(list(seen))
        spg = np.array(list(seen.values()), np.int16)
        pos, cum = padded_profiles(list(formulas), kmax=KMAX)
        try:
            np.savez_compressed(
                cache, sha256=np.array(sha), formulas=formulas, spg=spg, positions=pos.astype(np.int16), cumfrac=cum
            )
        except OSError as exc:
            log.warning("cannot write %s: %s", cache, exc)
        self._set(formulas, spg, pos, cum)

    def _set(self, formulas, spg, positions, cumfrac) -> None:
        if self._exclude:
            keep = ~np.isin(formulas, np.array(sorted(self._exclude), dtype=formulas.dtype))
            formulas, spg, positions, cumfrac = formulas[keep], spg[keep], positions[keep], cumfrac[keep]
        self.formulas = formulas
        self.spg = spg
        self.nel = (positions >= 0).sum(1)
        self.index = EMDIndex(positions, cumfrac)

    def nearest(self, formula: str, k: int = 3) -> list[SpacegroupSource]:
        """Up to k known compositions with as many elements, nearest first (EMD)."""
        nel = len(reduced_counts(formula))
        idx, d = self.index.nearest(formula, k=k, mask=self.nel == nel)
        return [
            SpacegroupSource(str(self.formulas[i]), int(self.spg[i]), float(x)) for i, x in zip(idx, d, strict=True)
        ]


@lru_cache(maxsize=1)
def known_spacegroups() -> KnownSpacegroups:
    """The process-wide :class:`KnownSpacegroups` (built once, cached to data/structures/known_index.npz)."""
    return KnownSpacegroups()


def random_symmetric(
    formula: str, source: SpacegroupSource, trials: int = 3, seed: int = 0, max_z: int = 4
) -> list[Trial]:
    """Random symmetric structures (pyxtal) of ``formula`` in the space group of ``source``.

    Tries formula units Z = 1..``max_z`` until pyxtal can place the atoms on Wyckoff positions,
    ``trials`` structures with seeds ``seed, seed+1, ...``. Returns the trials made (a trial with
    ``reason`` when none could be made); their template records ``source``'s formula and EMD.
    """
    from pyxtal import pyxtal

    formula = canonical_formula(formula)
    counts = dict(reduced_counts(formula))
    els = list(counts)
    out: list[Trial] = []
    last_err = ""

    spg = source.spg

    def template(tid: str) -> dict[str, Any]:
        return {
            "id": tid,
            "formula": source.formula,
            "source": "pyxtal_random",
            "emd": source.emd,
            "spg": spg,
            "mpid": None,
        }

    for t in range(trials):
        made = False
        for z in range(1, max_z + 1):
            xtal = pyxtal()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    xtal.from_random(3, spg, els, [counts[e] * z for e in els], random_state=seed + t)
                    if not xtal.valid:
                        continue
                    s = xtal.to_pymatgen()
            except Exception as exc:  # pyxtal signals incompatible Wyckoff counts with various errors
                last_err = f"{type(exc).__name__}: {exc}"
                continue
            tid = f"pyxtal:{spg}:z{z}:s{seed + t}"
            out.append(Trial(formula, tid, s, template(tid), mapping={e: e for e in els}))
            made = True
            break
        if not made:
            break
    if not out:
        why = f"pyxtal could not place {formula} in space group {spg} with Z<= {max_z}"
        out.append(Trial.failed(formula, f"{why} ({last_err or 'no valid structure'})", template(f"pyxtal:{spg}")))
    return out


def propose_structures(
    formula: str,
    library: TemplateLibrary,
    k: int = 3,
    fallback_trials: int = 3,
    seed: int = 0,
    known: KnownSpacegroups | None = None,
) -> list[Trial]:
    """Candidate structures for ``formula``: the top-``k`` EMD-nearest same-anonymised templates,
    substituted; else ``fallback_trials`` pyxtal structures in the space group of the nearest known
    composition(s) (from ``known``, default the process-wide :func:`known_spacegroups`). Never raises
    for a valid formula: failures come back as trials with a reason.
    """
    formula = canonical_formula(formula)
    if any(e not in MOD_PETTI for e, _ in reduced_counts(formula)):
        return [Trial.failed(formula, "element without a mod_petti position")]
    hits = library.search(formula, k=k)
    trials: list[Trial] = []
    for row, d in hits:
        try:
            trials.append(substitute(library.template(row), formula, d))
        except Exception as exc:
            tried = {
                "id": str(library.tids[row]),
                "formula": str(library.formulas[row]),
                "source": str(library.sources[row]),
                "emd": d,
            }
            trials.append(Trial.failed(formula, f"substitution failed: {exc}", tried))
    if trials:
        return trials
    try:
        near = (known if known is not None else known_spacegroups()).nearest(formula, k=3)
    except Exception as exc:
        near = []
        log.warning("known-composition lookup failed for %s: %s", formula, exc)
    for source in near:
        made = random_symmetric(formula, source, trials=fallback_trials, seed=seed)
        if any(t.structure is not None for t in made):
            return made
        trials = made
    if not trials:
        trials = [Trial.failed(formula, "no template with the same anonymised formula and no known composition")]
    return trials
