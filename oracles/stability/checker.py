"""Relaxation and thermodynamic stability with CHGNet (the pretrained model shipped in its wheel).

* :func:`relax` relaxes a structure (FIRE + FrechetCellFilter, bounded steps) and returns the
  energy per atom; :func:`single_point` evaluates without relaxing.
* :class:`ElementalReferences`: the energy per atom of each element's lowest-energy structure relaxed
  by the same model (fcc/bcc/hcp/diamond AFLOW prototypes from pymatgen and the element's own
  library structures; dimers in a 12 Å box for H, N, O, F, Cl), cached in
  ``data/structures/chgnet_elemental_refs.json``.
* :class:`PhaseEnergies`: competing phases of a chemical system taken from the template library (all
  of them by default), evaluated by the same model (single points of DFT-relaxed structures,
  relaxations of the others), cached per template id in ``data/structures/chgnet_phase_energies.json``.
* :class:`StabilityChecker` turns a :class:`~generators.templates.Trial` into a :class:`Verdict`
  whose ``verdict`` is an :class:`oracles.stability.verdicts.StabilityVerdict` (``stable``,
  ``near_hull``, ``unstable``, ``unconverged``, ``e_form_only``, ``failed``, with a reason); the
  hull is :func:`oracles.stability.hull.e_above_hull` over every library phase plus MP formation
  energies. It never raises for a bad structure. Any :mod:`oracles.stability.relaxers` potential
  (SevenNet) can replace CHGNet (``relaxer=``); its references and phases get their own caches.

Energies are in eV/atom. CHGNet runs on CPU; call ``torch.set_num_threads(1)`` per worker (done by
:func:`get_model` when ``threads`` is given).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import InitVar, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure

from alcore.composition import canonical_formula, reduced_counts
from alcore.errors import StructureError
from alcore.paths import DATA_DIR

log = logging.getLogger(__name__)

REFS_PATH = DATA_DIR / "structures" / "chgnet_elemental_refs.json"
PHASES_PATH = DATA_DIR / "structures" / "chgnet_phase_energies.json"
GAS_DIMERS: dict[str, float] = {"H": 0.74, "N": 1.10, "O": 1.21, "F": 1.42, "Cl": 1.99}  # bond lengths, Å
UNARY_PROTOTYPES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_cF8_227_a")
MIN_DISTANCE = 0.5  # Å: closer atoms mean a broken structure
E_HULL_MAX = 0.1  # eV/atom


# ---------------------------------------------------------------------------- model and relaxation
_MODEL_LOCK = threading.Lock()
_STDOUT_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Swallow what libraries print in this block (model loading).

    ``redirect_stdout`` swaps the process-wide ``sys.stdout``: two relaxation threads whose swaps
    overlapped restored it in the wrong order and left it on a dead buffer (measured: the CLI's
    result tables vanished after the structure stage). Every swap in this package goes through this
    one lock, so they nest in order and ``sys.stdout`` always comes back.
    """
    with _STDOUT_LOCK, contextlib.redirect_stdout(io.StringIO()):
        yield


def get_model(threads: int | None = 1):
    """The pretrained CHGNet model (loaded once per process); sets torch's thread count if given."""
    with _MODEL_LOCK:
        return _load_model(threads)


@lru_cache(maxsize=1)
def _load_model(threads: int | None):
    import torch
    from chgnet.model import CHGNet

    if threads:
        torch.set_num_threads(threads)
    with quiet_stdout():
        return CHGNet.load(verbose=False)


def min_distance(structure: Structure) -> float:
    """Smallest interatomic distance (Å, periodic minimum image) between distinct sites; inf for 1 site."""
    if len(structure) < 2:
        return float("inf")
    dm = structure.distance_matrix
    np.fill_diagonal(dm, np.inf)
    return float(dm.min())


@dataclass
class RelaxResult:
    """Outcome of a relaxation: final structure, energies (eV/atom), steps taken, convergence."""

    structure: Structure
    energy_per_atom: float
    initial_energy_per_atom: float
    steps: int
    converged: bool
    seconds: float


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with the BLAS libraries (numpy's and scipy's OpenBLAS) on one thread each.

    ASE's ``FrechetCellFilter`` calls scipy's ``expm_frechet``/``logm`` on 3x3 matrices several times
    per FIRE step; with OpenBLAS's default thread pool on 2 busy cores each tiny call spun for
    milliseconds. Measured (6-atom cell, 25 steps, load ~2): 14.7 and 20.3 s per relaxation with the
    default pool, 4.9 and 2.6 s inside this block; single points 29 -> 6 ms.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def single_point(structure: Structure, model=None) -> float:
    """CHGNet energy per atom (eV/atom) of ``structure`` as given (no relaxation)."""
    return single_points([structure], model)[0]


def single_points(structures: Sequence[Structure], model=None, batch_size: int = 16) -> list[float]:
    """CHGNet energies per atom (eV/atom) of ``structures`` as given, predicted in batches."""
    if not structures:
        return []
    model = model or get_model()
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore")
        preds = model.predict_structure(list(structures), task="e", batch_size=batch_size)
    if isinstance(preds, dict):  # CHGNet returns a dict, not a list, for one structure
        preds = [preds]
    return [float(np.asarray(p["e"]).ravel()[0]) for p in preds]


# ASE's FrechetCellFilter takes scipy's logm of 3x3 cell matrices, whose "may be inaccurate" warning
# reports errors of ~1e-13. warnings.catch_warnings is not thread-safe (the structures flow relaxes in
# two threads, and one thread leaving it restores the filters under the other), so this one harmless
# warning is filtered process-wide.
warnings.filterwarnings("ignore", message="logm result may be inaccurate", category=RuntimeWarning)

_OPTIMIZERS = threading.local()


def thread_optimizer(model):
    """This thread's CHGNet ``StructOptimizer`` (FIRE) for ``model``: one per thread, so concurrent
    relaxations never share a calculator, built once (building one prints a line)."""
    cache = getattr(_OPTIMIZERS, "by_model", None)
    if cache is None:
        cache = _OPTIMIZERS.by_model = {}
    if id(model) not in cache:
        from chgnet.model import StructOptimizer

        cache[id(model)] = StructOptimizer(model=model, optimizer_class="FIRE")
    return cache[id(model)]


def fire_relax(
    structure: Structure, model, fmax: float, steps: int, relax_cell: bool = True, **options: Any
) -> dict[str, Any]:
    """One CHGNet FIRE relaxation on this thread's optimizer (:func:`thread_optimizer`), quiet and on
    one BLAS thread: at most ``steps`` steps to ``fmax`` eV/Å, the cell too unless ``relax_cell`` is
    False; ``options`` go to ``StructOptimizer.relax``. Returns CHGNet's result (``final_structure``,
    ``trajectory``); raises what CHGNet raises."""
    opt = thread_optimizer(model)
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore")
        # verbose=True with logfile=None: ASE logs to devnull and CHGNet does not swap the
        # process-wide sys.stdout (its verbose=False does, and swaps from several relaxation
        # threads at once leaked FIRE lines into the logs or left sys.stdout on a dead buffer)
        return opt.relax(
            structure, fmax=fmax, steps=steps, relax_cell=relax_cell, verbose=True, logfile=None, **options
        )


def relax(
    structure: Structure,
    model=None,
    fmax: float = 0.1,
    steps: int = 200,
    relax_cell: bool = True,
) -> RelaxResult:
    """Relax ``structure`` with CHGNet (FIRE; cell too unless ``relax_cell`` is False).

    Takes a Structure, force tolerance ``fmax`` (eV/Å) and a step bound; returns a
    :class:`RelaxResult`. Raises :class:`StructureError` if the model fails or the energy is not
    finite.
    """
    model = model or get_model()
    t0 = time.perf_counter()
    try:
        out = fire_relax(structure, model, fmax, steps, relax_cell, assign_magmoms=False)
    except Exception as exc:
        raise StructureError(f"CHGNet relaxation failed: {type(exc).__name__}: {exc}") from None
    traj = out["trajectory"]
    n = len(structure)
    energies = np.asarray(traj.energies, float) / n
    if len(energies) == 0 or not np.all(np.isfinite(energies)):
        raise StructureError("CHGNet relaxation produced a non-finite energy")
    final = out["final_structure"]
    # the observer records the start, every FIRE step, and once more after the run: FIRE steps = len - 2.
    # FIRE stops before its step bound only when its own criterion holds (forces on the cell filter's
    # coordinates, stress included); the Cartesian forces of the last frame can exceed fmax by ~10 %
    # when the cell is strained (measured: Ba2NbCl4 stopped at 34 steps with 0.111 eV/Å), so they
    # are not the test of convergence.
    n_steps = max(0, len(energies) - 2)
    return RelaxResult(
        structure=final,
        energy_per_atom=float(energies[-1]),
        initial_energy_per_atom=float(energies[0]),
        steps=n_steps,
        converged=n_steps < steps,
        seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------- JSON caches
class _JsonCache:
    """A small JSON dict on disk, safe for threads and for processes sharing the file.

    ``put`` merges under an exclusive ``flock`` on ``<file>.lock``: it re-reads the file, adds the
    entry and writes atomically, so entries written meanwhile by other processes (Dask workers of
    the structures flow) are kept and picked up.
    """

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self.lock = threading.RLock()
        self.data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        if not (self.path and self.path.exists()):
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache %s: %s", self.path, exc)
            return {}

    def get(self, key: str) -> Any:
        with self.lock:
            return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            if self.path is None:
                return
            try:
                with open(self.path.with_suffix(".lock"), "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    self.data = {**self._read(), **self.data}
                    tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                    tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
                    tmp.replace(self.path)
            except OSError as exc:
                log.warning("cannot write cache %s: %s", self.path, exc)


@lru_cache(maxsize=1)
def _aflow_prototypes() -> dict[str, Structure]:
    import pymatgen.analysis.prototypes as proto

    path = os.path.join(os.path.dirname(proto.__file__), "aflow_prototypes.json.gz")
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    return {d["tags"]["aflow"]: Structure.from_dict(d["snl"]) for d in data if d["tags"]["aflow"] in UNARY_PROTOTYPES}


def dimer(element: str, bond: float, box: float = 12.0) -> Structure:
    """A diatomic molecule of ``element`` with bond length ``bond`` (Å) in a cubic ``box`` (Å)."""
    return Structure(
        Lattice.cubic(box), [element, element], [[0, 0, 0], [bond / box, 0, 0]], coords_are_cartesian=False
    )


class ElementalReferences:
    """Energy per atom (eV/atom) of each element's reference state, relaxed by CHGNet, cached on disk.

    Candidates: the element's own library structures (MP/AMCSD/OQMD; the ``max_library`` smallest
    with <= ``max_sites`` sites), else (or also, with ``always_prototypes``) the fcc/bcc/hcp (and, for
    C/Si/Ge/Sn, diamond) AFLOW prototypes; a dimer in a box for H, N, O, F, Cl. The lowest relaxed
    energy wins. ``energy("Na")`` computes on first use (a few short relaxations) and stores
    ``{"energy_per_atom", "structure_source", "candidates": {...}}`` in the JSON cache.
    """

    def __init__(
        self,
        path: Path | str | None = REFS_PATH,
        library=None,
        model=None,
        fmax: float = 0.1,
        steps: int = 150,
        max_sites: int = 12,
        max_library: int = 3,
        always_prototypes: bool = False,
        relaxer=None,
    ) -> None:
        self.cache = _JsonCache(path)
        self.library = library
        self.model = model
        self.relaxer = relaxer  # an oracles.stability.relaxers.Relaxer; None = CHGNet (``model``)
        self.fmax = fmax
        self.steps = steps
        self.max_sites = max_sites
        self.max_library = max_library
        self.always_prototypes = always_prototypes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def candidates(self, element: str) -> dict[str, tuple[Structure, bool]]:
        """Candidate reference structures ``{name: (structure, relax_cell)}`` for ``element``."""
        if element in GAS_DIMERS:
            return {"dimer": (dimer(element, GAS_DIMERS[element]), False)}
        from generators.templates import atomic_volume

        out: dict[str, tuple[Structure, bool]] = {}
        if self.library is not None:
            rows = [
                r
                for r in self.library.rows_with_anon("1")
                if str(self.library.formulas[r]) == element and self.library.nsites[r] <= self.max_sites
            ]
            for r in sorted(rows, key=lambda r: int(self.library.preference[r]))[: self.max_library]:
                t = self.library.template(int(r))
                out[f"library:{t.tid}:{t.source}"] = (t.structure(), True)
        if not out or self.always_prototypes:
            for name, proto in _aflow_prototypes().items():
                if name == "A_cF8_227_a" and element not in {"C", "Si", "Ge", "Sn"}:
                    continue
                s = proto.copy()
                s.replace_species({sp: element for sp in s.composition.elements})
                s.scale_lattice(atomic_volume(element) * len(s) * 1.4)
                out[f"aflow:{name}"] = (s, True)
        return out

    def energy(self, element: str) -> float:
        """Reference energy per atom of ``element`` (eV/atom); computed and cached on first use."""
        hit = self.cache.get(element)
        if hit is not None:
            return float(hit["energy_per_atom"])
        with self._guard:
            lock = self._locks.setdefault(element, threading.Lock())
        with lock:
            hit = self.cache.get(element)
            if hit is not None:
                return float(hit["energy_per_atom"])
            results: dict[str, float] = {}
            for name, (s, cell) in self.candidates(element).items():
                try:
                    results[name] = _relax_with(
                        self.relaxer, self.model, s, fmax=self.fmax, steps=self.steps, relax_cell=cell
                    ).energy_per_atom
                except StructureError as exc:
                    log.warning("reference %s for %s failed: %s", name, element, exc)
            if not results:
                raise StructureError(f"no reference structure of {element} could be relaxed")
            best = min(results, key=results.get)
            self.cache.put(
                element,
                {
                    "energy_per_atom": results[best],
                    "structure_source": best,
                    "candidates": results,
                    "fmax": self.fmax,
                    "steps": self.steps,
                },
            )
            return results[best]

    def energies(self, elements: Iterable[str]) -> dict[str, float]:
        """``{element: eV/atom}`` for several elements."""
        return {e: self.energy(e) for e in elements}


def _relax_with(relaxer, model, structure: Structure, **kwargs: Any) -> RelaxResult:
    """Relax with ``relaxer`` (an :class:`oracles.stability.relaxers.Relaxer`) if given, else CHGNet ``model``."""
    if relaxer is not None:
        return relaxer.relax(structure, **kwargs)
    return relax(structure, model, **kwargs)


def _single_points_with(relaxer, model, structures: Sequence[Structure]) -> list[float]:
    """Single points (eV/atom) with ``relaxer`` if given, else CHGNet ``model``."""
    if relaxer is not None:
        return relaxer.single_points(structures)
    return single_points(structures, model)


def formation_energy(formula: str | Composition, energy_per_atom: float, refs: dict[str, float]) -> float:
    """Formation energy per atom (eV/atom): ``E - sum_i x_i E_ref,i`` with atomic fractions ``x_i``."""
    comp = Composition(formula) if isinstance(formula, str) else formula
    frac = comp.fractional_composition
    return float(energy_per_atom - sum(float(x) * refs[el.symbol] for el, x in frac.items()))


#: Highest atomic number CHGNet 0.4.2 embeds (its element embedding has 94 rows: H..Pu).
MAX_Z = 94

#: Template sources whose structures are not DFT-relaxed (experimental minerals, idealised prototypes):
#: their competing-phase energies come from a relaxation; all others (Materials Project, OQMD) are
#: taken as they are (a single point).
RELAXED_PHASE_SOURCES = frozenset({"amcsd_larixite", "aflow_prototypes"})


@dataclass(eq=False)
class PhaseEnergies:
    """CHGNet energies of the competing phases of a chemical system, from the template library.

    For a system, one template per reduced formula (the library's preferred one: MP/experimental,
    lowest DFT formation energy, fewest sites) whose elements are a subset of the
    system and that has 2+ elements and at most ``max_sites`` sites (None: any), the ``max_phases``
    smallest (None, the default: every one; the cap of 12 used before made E_hull a lower bound).
    Phases from DFT-relaxed sources (MP, OQMD) get a CHGNet single point, batched: measured on the
    71 phases relaxed before this rule, single point minus relaxed energy is 0 eV/atom (median) and
    3 meV/atom (90th percentile) for MP/OQMD structures (CHGNet was trained on MP relaxations), but
    up to 1.7 eV/atom for AMCSD minerals. Phases from :data:`RELAXED_PHASE_SOURCES` (or every phase
    with ``always_relax``) are relaxed (``steps`` bound). Cached by template id.
    """

    library: Any
    path: InitVar[Path | str | None] = PHASES_PATH
    model: Any = None
    fmax: float = 0.1
    steps: int = 150
    max_sites: int | None = None
    max_phases: int | None = None
    always_relax: bool = False
    relaxer: Any = None  # an oracles.stability.relaxers.Relaxer; None = CHGNet (``model``)
    cache: _JsonCache = field(init=False, repr=False)
    _elements: list[frozenset[str]] | None = field(init=False, default=None, repr=False)

    def __post_init__(self, path: Path | str | None) -> None:
        self.cache = _JsonCache(path)

    def _element_sets(self) -> list[frozenset[str]]:
        """Element set of every library row (parsed once)."""
        if self._elements is None:
            sets: dict[str, frozenset[str]] = {}
            self._elements = [
                sets.setdefault(f, frozenset(e for e, _ in reduced_counts(f))) for f in map(str, self.library.formulas)
            ]
        return self._elements

    def phase_rows(self, elements: Sequence[str]) -> list[int]:
        """Library rows of the competing (2+ element) phases of the system ``elements``."""
        els = set(elements)
        best: dict[str, int] = {}
        lib = self.library
        sets = self._element_sets()
        rows = np.arange(len(lib.nsites)) if self.max_sites is None else np.flatnonzero(lib.nsites <= self.max_sites)
        for r in rows:
            fe = sets[r]
            if len(fe) < 2 or not fe <= els:
                continue
            f = str(lib.formulas[r])
            if f not in best or lib.preference[r] < lib.preference[best[f]]:
                best[f] = int(r)
        return sorted(best.values(), key=lambda r: (int(lib.nsites[r]), r))[: self.max_phases]  # None: all

    def energies(self, elements: Sequence[str]) -> list[tuple[str, str, float]]:
        """``[(formula, template id, eV/atom)]`` of the system's competing phases (computing uncached ones)."""
        rows = self.phase_rows(elements)
        todo = [r for r in rows if self.cache.get(str(self.library.tids[r])) is None]
        single = [
            r for r in todo if not self.always_relax and str(self.library.sources[r]) not in RELAXED_PHASE_SOURCES
        ]
        if single:
            templates = [self.library.template(r) for r in single]
            try:
                values = _single_points_with(self.relaxer, self.model, [t.structure() for t in templates])
            except Exception as exc:  # a bad structure in the batch: fall back to one at a time
                log.warning("batched single points failed (%s); one at a time", exc)
                values = []
                for t in templates:
                    try:
                        values.append(_single_points_with(self.relaxer, self.model, [t.structure()])[0])
                    except Exception as exc1:
                        log.warning("competing phase %s (%s) failed: %s", t.formula, t.tid, exc1)
                        values.append(float("nan"))
            for t, e in zip(templates, values, strict=True):
                if np.isfinite(e):
                    self.cache.put(
                        t.tid, {"formula": t.formula, "energy_per_atom": e, "steps": 0, "method": "single-point"}
                    )
        for r in set(todo) - set(single):
            t = self.library.template(r)
            try:
                res = _relax_with(self.relaxer, self.model, t.structure(), fmax=self.fmax, steps=self.steps)
            except StructureError as exc:
                log.warning("competing phase %s (%s) failed: %s", t.formula, t.tid, exc)
                continue
            self.cache.put(
                t.tid,
                {"formula": t.formula, "energy_per_atom": res.energy_per_atom, "steps": res.steps, "method": "relaxed"},
            )
        out = []
        for r in rows:
            hit = self.cache.get(str(self.library.tids[r]))
            if hit is not None:
                out.append((hit["formula"], str(self.library.tids[r]), float(hit["energy_per_atom"])))
        return out


def energy_above_hull(
    formula: str, energy_per_atom: float, refs: dict[str, float], phases: Sequence[tuple[str, str, float]]
) -> float:
    """E_hull (eV/atom, >= 0) of a phase against elemental refs and competing phases (pymatgen)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    entries = [PDEntry(Composition(el), e) for el, e in refs.items()]
    entries += [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, _, e in phases]
    comp = Composition(formula)
    cand = PDEntry(comp, energy_per_atom * comp.num_atoms, name="candidate")
    pd = PhaseDiagram(entries + [cand])
    return float(pd.get_e_above_hull(cand, allow_negative=False))


# ---------------------------------------------------------------------------- verdicts
@dataclass
class Verdict:
    """Stability outcome of one trial structure; energies in eV/atom, NaN where not computed.

    ``verdict`` is an :class:`oracles.stability.verdicts.StabilityVerdict` (a ``str``): ``stable``,
    ``near_hull``, ``unstable``, ``unconverged``, ``e_form_only`` or ``failed``. ``model`` names the
    potential that relaxed and judged it.
    """

    formula: str
    template_id: str
    verdict: str
    reason: str | None
    structure: Structure | None
    energy_per_atom: float = float("nan")
    initial_energy_per_atom: float = float("nan")
    e_form: float = float("nan")
    e_hull: float = float("nan")
    steps: int = 0
    converged: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    model: str = "chgnet-0.4.2-pretrained"


class StabilityChecker:
    """Relax a trial structure and judge it with :func:`oracles.stability.verdicts.judge`.

    The potential is ``relaxer`` (an :class:`oracles.stability.relaxers.Relaxer`, e.g. SevenNet) or,
    when None, CHGNet (``model``). Elemental references and competing-phase energies come from the
    same potential (cached in ``data/structures/<tag>_elemental_refs.json`` and
    ``<tag>_phase_energies.json``). The hull (:func:`oracles.stability.hull.e_above_hull`) uses
    every library phase of the chemical system evaluated by the potential, plus the Materials
    Project DFT formation energies of formulas the library lacks (``mp_phases``; False: none; an
    :class:`~oracles.stability.hull.MPFormationEnergies`: those); ``model_phases`` False leaves the
    library phases out (the hull is then the MP DFT hull, as Matbench Discovery judges a model);
    ``extra`` records ``n_competing_phases`` (and of those ``n_model_phases``, ``n_dft_phases``)
    and ``hull_decomposition``. ``compute_hull`` False gives at best ``e_form_only``.

    ``evaluate(trial)`` never raises for a bad structure or a failed relaxation; those give a
    ``"failed"`` :class:`Verdict` with the reason.
    """

    def __init__(
        self,
        library=None,
        refs: ElementalReferences | None = None,
        phases: PhaseEnergies | None = None,
        model=None,
        e_hull_max: float = E_HULL_MAX,
        fmax: float = 0.1,
        steps: int = 200,
        min_dist: float = MIN_DISTANCE,
        compute_hull: bool = True,
        relaxer=None,
        mp_phases=True,
        model_phases: bool = True,
    ) -> None:
        from oracles.stability.hull import MPFormationEnergies

        self.model = model
        self.relaxer = relaxer
        tag = relaxer.tag if relaxer is not None else "chgnet"
        self.model_name = relaxer.name if relaxer is not None else "chgnet-0.4.2-pretrained"
        self.refs = refs or ElementalReferences(
            path=REFS_PATH if relaxer is None else DATA_DIR / "structures" / f"{tag}_elemental_refs.json",
            library=library,
            model=model,
            relaxer=relaxer,
        )
        self.phases = (
            phases
            if phases is not None
            else (
                PhaseEnergies(
                    library,
                    path=PHASES_PATH if relaxer is None else DATA_DIR / "structures" / f"{tag}_phase_energies.json",
                    model=model,
                    relaxer=relaxer,
                )
                if library is not None and compute_hull and model_phases
                else None
            )
        )
        self.energy_correction = getattr(relaxer, "energy_correction", None)
        self.mp_phases = _mp_formation_energies() if mp_phases is True else (mp_phases or None)
        if self.mp_phases is not None and not isinstance(self.mp_phases, MPFormationEnergies):
            raise TypeError("mp_phases: True, False/None or an MPFormationEnergies")
        self.e_hull_max = e_hull_max
        self.fmax = fmax
        self.steps = steps
        self.min_dist = min_dist
        self.compute_hull = compute_hull

    def evaluate(self, trial) -> Verdict:
        """A :class:`Verdict` for a :class:`~generators.templates.Trial` (structure may be None)."""
        formula, tid = trial.formula, trial.template_id
        if trial.structure is None:
            return self._failed(formula, tid, trial.reason or "no structure (missing template)", None)
        return self.evaluate_structure(trial.structure, formula, tid)

    def _failed(self, formula: str, tid: str, reason: str, structure: Structure | None) -> Verdict:
        from oracles.stability.verdicts import StabilityVerdict

        return Verdict(formula, tid, StabilityVerdict.FAILED, reason, structure, model=self.model_name)

    def hull(self, formula: str, e_form: float, refs: dict[str, float]):
        """:class:`oracles.stability.hull.HullResult` of ``formula`` at ``e_form`` (eV/atom) against
        every competing phase (library phases by this checker's potential, MP DFT for the rest)."""
        from oracles.stability.hull import e_above_hull

        elements = [e for e, _ in reduced_counts(formula)]
        model_phases: dict[str, float] = {}
        for f, _, e in self.phases.energies(elements) if self.phases is not None else []:
            ef = formation_energy(f, e + self.correction(Composition(f)), refs)
            rf = Composition(f).reduced_formula
            model_phases[rf] = min(ef, model_phases.get(rf, ef))
        dft = self.mp_phases.phases(elements) if self.mp_phases is not None else {}
        return e_above_hull(formula, e_form, model_phases, dft)

    def correction(self, composition: Composition, structure: Structure | None = None) -> float:
        """Energy correction (eV/atom) added to this potential's energies before E_form: MP2020 for
        potentials trained on raw MPtrj energies (SevenNet), 0 for CHGNet."""
        if self.energy_correction == "mp2020":
            from oracles.stability.corrections import mp2020_correction

            return mp2020_correction(composition, structure)
        return 0.0

    def evaluate_structure(self, structure: Structure, formula: str | None = None, template_id: str = "") -> Verdict:
        """Relax ``structure`` and judge it (see class doc); ``formula`` defaults to its composition."""
        from oracles.stability.verdicts import StabilityVerdict, judge

        formula = canonical_formula(formula or structure.composition.reduced_formula)
        beyond = [e for e, _ in reduced_counts(formula) if Element(e).Z > MAX_Z]
        if beyond:
            who = "CHGNet" if self.relaxer is None or self.relaxer.tag == "chgnet" else self.model_name
            reason = f"{', '.join(beyond)} beyond {who}'s elements (Z <= {MAX_Z}, H..Pu)"
            return self._failed(formula, template_id, reason, structure)
        d0 = min_distance(structure)
        if d0 < self.min_dist:
            return self._failed(
                formula, template_id, f"overlapping atoms: min distance {d0:.2f} Å < {self.min_dist} Å", structure
            )
        try:
            res = _relax_with(self.relaxer, self.model, structure, fmax=self.fmax, steps=self.steps)
        except StructureError as exc:
            return self._failed(formula, template_id, str(exc), structure)
        v = Verdict(
            formula,
            template_id,
            StabilityVerdict.FAILED,
            None,
            res.structure,
            res.energy_per_atom,
            res.initial_energy_per_atom,
            steps=res.steps,
            converged=res.converged,
            seconds=res.seconds,
            model=self.model_name,
        )
        d1 = min_distance(res.structure)
        if d1 < self.min_dist:
            v.reason = f"relaxation collapsed: min distance {d1:.2f} Å"
            return v
        if res.structure.volume / len(res.structure) > 200:
            v.reason = "relaxation blew up: volume > 200 Å^3/atom"
            return v
        try:
            elements = [e for e, _ in reduced_counts(formula)]
            refs = self.refs.energies(elements)
            corr = self.correction(res.structure.composition, res.structure)
            v.extra["energy_correction"] = {"scheme": self.energy_correction or "none", "ev_per_atom": corr}
            v.e_form = formation_energy(formula, res.energy_per_atom + corr, refs)
            if self.compute_hull:
                h = self.hull(formula, v.e_form, refs)
                v.e_hull = h.e_hull
                v.extra.update(
                    n_competing_phases=h.n_phases,
                    n_model_phases=h.n_model_phases,
                    n_dft_phases=h.n_dft_phases,
                    hull_decomposition=h.decomposition,
                )
        except Exception as exc:
            v.reason = f"energy references failed: {type(exc).__name__}: {exc}"
            return v
        v.verdict, v.reason = judge(v.e_form, v.e_hull, res.converged, self.compute_hull, self.e_hull_max, res.steps)
        if v.verdict == StabilityVerdict.FAILED:
            v.e_hull = float("nan")  # a failed relaxation has no meaningful distance to the hull
        if not res.converged:
            v.extra["note"] = f"not converged in {res.steps} steps (fmax {self.fmax} eV/Å)"
        return v


@lru_cache(maxsize=1)
def _mp_formation_energies():
    """The process-wide MP DFT formation energies (read on first use)."""
    from oracles.stability.hull import MPFormationEnergies

    return MPFormationEnergies()
