"""One interface for the three crystal-structure generators: EMD template substitution, CrystalGAN
(Pd-Ni-H) and the composition-conditioned crystal GAN (Mg-Mn-O).

Each is a :class:`StructureGenerator`: ``propose(n, seed, formula=None) -> list[Trial]``, registered
by name (:func:`get_structure_generator`). A :class:`~generators.templates.Trial` carries the structure
(or the reason there is none) and where it came from (``template``: ``{id, formula, source, ...}``;
``source`` names the generator), so the structure stage's judges
(:class:`oracles.stability.checker.StabilityChecker`) and the structures flow treat every generator
alike. The adapters only translate; each model keeps its own module
(:mod:`generators.templates`, :mod:`generators.crystalgan`, :mod:`generators.cccgan`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pymatgen.core import Structure

from alcore.composition import canonical_formula
from alcore.errors import ConfigError
from generators.templates import Trial


@runtime_checkable
class StructureGenerator(Protocol):
    """Makes crystal structures. ``needs_formula``: True when ``propose`` requires a target formula."""

    name: str
    needs_formula: bool

    def propose(self, n: int, seed: int, formula: str | None = None) -> list[Trial]:
        """Up to ``n`` proposals (for ``formula`` when given), deterministic for a seed."""
        ...


def _require_formula(generator: StructureGenerator, formula: str | None) -> str:
    if formula is None:
        raise ConfigError(f"structure generator {generator.name!r} needs a target formula (e.g. formula='MgO')")
    return canonical_formula(formula)


class TemplateSubstitution:
    """EMD-nearest same-prototype templates with the candidate's elements substituted
    (:func:`generators.templates.propose_structures`); ``n`` is the number of templates (k)."""

    name = "templates"
    needs_formula = True

    def __init__(self, library: Any = None, fallback_trials: int = 3) -> None:
        self._library = library
        self.fallback_trials = fallback_trials

    @cached_property
    def library(self) -> Any:
        """The template library (the committed one unless given)."""
        from generators.templates import TemplateLibrary

        return self._library if self._library is not None else TemplateLibrary.load()

    def propose(self, n: int, seed: int, formula: str | None = None) -> list[Trial]:
        """The top-``n`` substitutions for ``formula`` (or pyxtal fallbacks), each with its template."""
        from generators.templates import propose_structures

        target = _require_formula(self, formula)
        return propose_structures(target, self.library, k=n, fallback_trials=self.fallback_trials, seed=seed)


class CrystalGANGenerator:
    """CrystalGAN's step-2 translations (Pd-Ni-H ternaries) decoded into structures; with ``formula``
    only the decodes of that reduced formula are kept."""

    name = "crystalgan"
    needs_formula = False

    def __init__(self, weights: str | Path | None = None) -> None:
        self.weights = weights

    @cached_property
    def model(self) -> Any:
        """The trained CrystalGAN (the committed weights unless ``weights`` names a stem)."""
        from alcore.paths import WEIGHTS_DIR
        from generators.crystalgan.train import load_weights

        return load_weights(self.weights or WEIGHTS_DIR / "crystalgan_PdH-NiH")

    def propose(self, n: int, seed: int, formula: str | None = None) -> list[Trial]:
        """Decode one generated batch of the seed; the first ``n`` (matching) proposals."""
        from generators.crystalgan.data import try_decode
        from generators.crystalgan.train import generate, vectors_to_numpy

        target = canonical_formula(formula) if formula is not None else None
        vectors, ids = generate(self.model, seed=seed)
        out: list[Trial] = []
        for vec, sample_id in zip(vectors_to_numpy(vectors), ids, strict=True):
            structure = try_decode(vec, self.model.metal_a, self.model.metal_b, self.model.config.slots)
            made = canonical_formula(structure.composition.reduced_formula) if structure is not None else ""
            if target is not None and made != target:
                continue
            reason = None if structure is not None else "feature vector does not decode into a cell"
            out.append(_sample_trial(self.name, made, sample_id, structure, reason))
            if len(out) == n:
                break
        return out


class ConditionedCrystalGAN:
    """The composition-conditioned crystal GAN (Mg-Mn-O): ``n`` images for the formula's cell
    composition, decoded and checked (composition, 1.0 Å distance bound)."""

    name = "cccgan"
    needs_formula = True

    def __init__(self, weights_name: str | None = None, directory: str | Path | None = None) -> None:
        self.weights_name = weights_name
        self.directory = Path(directory) if directory else None

    @cached_property
    def generator(self) -> Any:
        """The trained generator network (the committed weights unless named)."""
        from generators.cccgan.train import DEFAULT_NAME, load_generator

        return load_generator(self.weights_name or DEFAULT_NAME, self.directory)[0]

    def propose(self, n: int, seed: int, formula: str | None = None) -> list[Trial]:
        """``n`` decoded images for ``formula`` (a cell composition such as ``Mg2Mn2O6``)."""
        from generators.cccgan.evaluate import validate
        from generators.cccgan.representation import parse_counts
        from generators.cccgan.train import generate

        target = _require_formula(self, formula)  # canonical; the cell itself is read from the formula as written
        counts = parse_counts(formula)
        return [
            _sample_trial(self.name, target, f"cccgan-{seed}-{c.index}", c.structure if c.valid else None, c.reason)
            for c in validate(generate(self.generator, counts, n, seed=seed), counts)
        ]


def _sample_trial(
    generator: str, formula: str, sample_id: str, structure: Structure | None, reason: str | None
) -> Trial:
    """A GAN sample as a :class:`Trial` (its ``template`` names the generator and the sample)."""
    template = {"id": sample_id, "formula": "", "source": generator, "emd": float("nan")}
    return Trial(formula, sample_id, structure, template, reason=None if structure is not None else reason)


#: name -> factory(**options) of every structure generator.
STRUCTURE_GENERATORS: dict[str, Callable[..., StructureGenerator]] = {
    TemplateSubstitution.name: TemplateSubstitution,
    CrystalGANGenerator.name: CrystalGANGenerator,
    ConditionedCrystalGAN.name: ConditionedCrystalGAN,
}


def get_structure_generator(name: str, **options: Any) -> StructureGenerator:
    """The structure generator registered under ``name`` (``templates``, ``crystalgan``, ``cccgan``),
    built with ``options``; raises :class:`ConfigError` naming the known ones for an unknown name."""
    if name not in STRUCTURE_GENERATORS:
        raise ConfigError(f"unknown structure generator {name!r}; known: {', '.join(sorted(STRUCTURE_GENERATORS))}")
    return STRUCTURE_GENERATORS[name](**options)
