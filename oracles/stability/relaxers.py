"""Machine-learned interatomic potentials that relax a structure and give its energy, behind one interface.

A :class:`Relaxer` has a ``name`` (recorded on every verdict document), ``energy_correction``
(``"mp2020"`` when its energies are raw MPtrj energies that need MP's 2020 corrections before they
are compared with MP formation energies, see :mod:`oracles.stability.corrections`; None when the
model was trained on corrected energies, as CHGNet was), a ``tag`` (the prefix of its
cache files in ``data/structures``: ``<tag>_elemental_refs.json``, ``<tag>_phase_energies.json``),
``relax(structure, fmax, steps, relax_cell) -> RelaxResult`` and ``single_points(structures) -> [eV/atom]``.

* :class:`CHGNetRelaxer`: CHGNet 0.4.2 pretrained (the functions of :mod:`oracles.stability.checker`;
  cache tag ``chgnet``, the files committed before this module).
* :class:`SevenNetRelaxer`: a SevenNet checkpoint shipped inside the ``sevenn`` wheel (MIT):
  ``7net-0``, ``7net-l3i5`` or ``7net-mf-0`` (multi-fidelity; its PBE head, ``modal="PBE"``),
  relaxed with the same protocol as CHGNet's ``StructOptimizer``: ASE FIRE on a
  ``FrechetCellFilter`` (cell and positions), force tolerance ``fmax`` (eV/Å), at most ``steps`` steps.

:func:`get_relaxer` returns a process-wide instance by name (see :data:`RELAXERS`). Energies are in
eV/atom; everything runs on CPU with one torch thread unless told otherwise.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np
from pymatgen.core import Structure

from alcore.errors import ConfigError, StructureError
from oracles.stability.checker import RelaxResult, one_blas_thread, quiet_stdout

#: SevenNet checkpoints in the sevenn 0.13.0 wheel: name -> (sevenn model name, modal or None)
SEVENNET_CHECKPOINTS: dict[str, tuple[str, str | None]] = {
    "7net-0": ("7net-0", None),
    "7net-l3i5": ("7net-l3i5", None),
    "7net-mf-0": ("7net-mf-0", "PBE"),
}

#: the SevenNet checkpoint ``judge: sevennet`` (and the funnel's tier 2) uses; chosen by
#: benchmarks/bench_stability.py (docs/structures.md)
DEFAULT_SEVENNET = "7net-l3i5"

#: every relaxer name :func:`get_relaxer` knows
RELAXERS: tuple[str, ...] = ("chgnet", *SEVENNET_CHECKPOINTS)


class Relaxer(Protocol):
    """What a stability judge needs from a potential (see module doc)."""

    name: str
    tag: str
    energy_correction: str | None

    def relax(
        self, structure: Structure, fmax: float = 0.1, steps: int = 200, relax_cell: bool = True
    ) -> RelaxResult: ...

    def single_points(self, structures: Sequence[Structure]) -> list[float]: ...


class CHGNetRelaxer:
    """CHGNet 0.4.2 pretrained through :mod:`oracles.stability.checker` (``model`` None loads it once)."""

    tag = "chgnet"
    name = "chgnet-0.4.2-pretrained"
    energy_correction = None  # trained on MP2020-corrected MPtrj energies

    def __init__(self, model=None, threads: int | None = 1) -> None:
        from oracles.stability.checker import get_model

        self.model = model if model is not None else get_model(threads=threads)

    def relax(self, structure: Structure, fmax: float = 0.1, steps: int = 200, relax_cell: bool = True) -> RelaxResult:
        """CHGNet FIRE relaxation (see :func:`oracles.stability.checker.relax`)."""
        from oracles.stability.checker import relax

        return relax(structure, self.model, fmax=fmax, steps=steps, relax_cell=relax_cell)

    def single_points(self, structures: Sequence[Structure]) -> list[float]:
        """CHGNet energies per atom (eV/atom) of ``structures`` as given."""
        from oracles.stability.checker import single_points

        return single_points(structures, self.model)


class SevenNetRelaxer:
    """A SevenNet checkpoint from the ``sevenn`` wheel as an ASE calculator (one per thread).

    ``checkpoint``: a key of :data:`SEVENNET_CHECKPOINTS`. Loading a calculator takes ~3 s (once
    per thread). Energies: the calculator's total energy divided by the number of sites (eV/atom).
    """

    def __init__(self, checkpoint: str = "7net-l3i5", threads: int | None = 1) -> None:
        if checkpoint not in SEVENNET_CHECKPOINTS:
            raise ConfigError(f"unknown SevenNet checkpoint {checkpoint!r}; known: {sorted(SEVENNET_CHECKPOINTS)}")
        import sevenn

        self.checkpoint = checkpoint
        self.model_name, self.modal = SEVENNET_CHECKPOINTS[checkpoint]
        self.name = f"sevennet-{sevenn.__version__}:{checkpoint}" + (f":{self.modal}" if self.modal else "")
        self.tag = "sevennet_" + checkpoint.removeprefix("7net-").replace("-", "")
        self.energy_correction = "mp2020"  # trained on uncorrected MPtrj energies
        self.threads = threads
        self._local = threading.local()
        self._load_lock = threading.Lock()

    def calculator(self):
        """This thread's ``SevenNetCalculator`` (built on first use)."""
        calc = getattr(self._local, "calc", None)
        if calc is None:
            import torch
            from sevenn.calculator import SevenNetCalculator

            if self.threads:
                torch.set_num_threads(self.threads)
            kwargs = {"modal": self.modal} if self.modal else {}
            with self._load_lock, warnings.catch_warnings(), quiet_stdout():
                warnings.simplefilter("ignore")
                calc = SevenNetCalculator(model=self.model_name, device="cpu", **kwargs)
            self._local.calc = calc
        return calc

    def single_points(self, structures: Sequence[Structure]) -> list[float]:
        """Energies per atom (eV/atom) of ``structures`` as given (no relaxation)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        out = []
        calc = self.calculator()
        with warnings.catch_warnings(), one_blas_thread():
            warnings.simplefilter("ignore")
            for s in structures:
                atoms = AseAtomsAdaptor.get_atoms(s)
                atoms.calc = calc
                out.append(float(atoms.get_potential_energy()) / len(atoms))
        return out

    def relax(self, structure: Structure, fmax: float = 0.1, steps: int = 200, relax_cell: bool = True) -> RelaxResult:
        """FIRE (+ FrechetCellFilter unless ``relax_cell`` is False) to ``fmax`` eV/Å in at most
        ``steps`` steps. Raises :class:`StructureError` if the model fails or an energy is not finite."""
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE
        from pymatgen.io.ase import AseAtomsAdaptor

        t0 = time.perf_counter()
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = self.calculator()
        n = len(atoms)
        energies: list[float] = []
        try:
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore")
                target = FrechetCellFilter(atoms) if relax_cell else atoms
                opt = FIRE(target, logfile=None)
                opt.attach(lambda: energies.append(float(atoms.get_potential_energy()) / n))
                converged = bool(opt.run(fmax=fmax, steps=steps))  # FIRE's own criterion (filter forces)
                forces = atoms.get_forces()
                energy = float(atoms.get_potential_energy()) / n
        except Exception as exc:
            raise StructureError(f"SevenNet relaxation failed: {type(exc).__name__}: {exc}") from None
        finite = np.all(np.isfinite(energies)) and np.isfinite(energy) and np.all(np.isfinite(forces))
        if not energies or not finite:
            raise StructureError("SevenNet relaxation produced a non-finite energy")
        n_steps = int(opt.nsteps)
        return RelaxResult(
            structure=AseAtomsAdaptor.get_structure(atoms),
            energy_per_atom=energy,
            initial_energy_per_atom=energies[0],
            steps=n_steps,
            converged=converged and n_steps <= steps,
            seconds=time.perf_counter() - t0,
        )


@lru_cache(maxsize=8)
def get_relaxer(name: str = "chgnet", threads: int | None = 1) -> Relaxer:
    """The process-wide relaxer called ``name`` (one of :data:`RELAXERS`); ConfigError otherwise."""
    if name == "chgnet":
        return CHGNetRelaxer(threads=threads)
    if name in SEVENNET_CHECKPOINTS:
        return SevenNetRelaxer(name, threads=threads)
    raise ConfigError(f"unknown relaxer {name!r}; known: {', '.join(RELAXERS)}")
