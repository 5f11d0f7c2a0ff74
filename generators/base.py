"""The composition-generator interface used by pool generation, and a small name registry.

A generator is any object with a ``name`` and ``sample(n, seed) -> list[str]`` that returns ``n``
canonical formulas (:func:`alcore.composition.canonical_formula` form; duplicates allowed, samples
that decode to nothing or to an unrepresentable composition may be dropped, so the list can be
shorter than ``n``). The same ``(n, seed)`` must give the same list: pool generation relies on it
to resume an interrupted run batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from alcore.errors import ConfigError


@runtime_checkable
class CompositionGenerator(Protocol):
    """Makes candidate formulas. ``name`` is recorded in every pool document it produces."""

    name: str

    def sample(self, n: int, seed: int) -> list[str]:
        """Draw ``n`` samples deterministically from ``seed``; returns canonical formulas (<= n)."""
        ...


_FACTORIES: dict[str, Callable[..., CompositionGenerator]] = {}


def register_generator(name: str, factory: Callable[..., CompositionGenerator]) -> None:
    """Register ``factory(**kwargs) -> CompositionGenerator`` under ``name`` (replaces an existing one)."""
    _FACTORIES[name] = factory


def available_generators() -> list[str]:
    """Names accepted by :func:`get_generator`, sorted."""
    _register_builtins()
    return sorted(_FACTORIES)


def get_generator(name: str, **kwargs: object) -> CompositionGenerator:
    """Build the generator registered as ``name`` (e.g. ``"matgan"``) with ``kwargs``.

    Raises :class:`~alcore.errors.ConfigError` naming the known generators for an unknown name.
    """
    _register_builtins()
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown generator {name!r}; choose one of {sorted(_FACTORIES)} or register one with "
            "generators.base.register_generator"
        ) from None
    return factory(**kwargs)


def _register_builtins() -> None:
    if "matgan" not in _FACTORIES:
        from generators.matgan import MatGANSampler

        _FACTORIES["matgan"] = MatGANSampler.pretrained
        _FACTORIES["matgan-valid"] = _matgan_valid
    if "complm" not in _FACTORIES:
        _FACTORIES["complm"] = _complm
        _FACTORIES["complm-novel"] = _complm_novel
        _FACTORIES["complm-distinct"] = _complm_distinct
        _FACTORIES["complm-cond"] = _complm_cond
    if "latent-random" not in _FACTORIES:
        from generators.latent_sampler import LatentSampler

        _FACTORIES["latent-random"] = LatentSampler.pretrained


def _matgan_valid(**kwargs: object) -> CompositionGenerator:
    """MatGAN trained on the SMACT-valid MP formulas only (``data/weights/matgan_valid``)."""
    from alcore.paths import WEIGHTS_DIR
    from generators.matgan import MatGANSampler

    return MatGANSampler.pretrained(
        kwargs.pop("weights_dir", WEIGHTS_DIR / "matgan_valid"), name="matgan-valid", **kwargs
    )


def _complm(**kwargs: object) -> CompositionGenerator:
    """The composition language model (``data/weights/complm``); kwargs of
    :meth:`generators.complm.CompLMSampler.pretrained` (temperature, top_p, guidance, condition,
    eform, reject_known, weights)."""
    from generators.complm import CompLMSampler

    return CompLMSampler.pretrained(**{"name": "complm", **kwargs})  # type: ignore[arg-type]


def _complm_novel(**kwargs: object) -> CompositionGenerator:
    """``complm`` that redraws samples which are known MP formulas (up to 4 times)."""
    return _complm(**{"name": "complm-novel", "reject_known": True, **kwargs})


def _complm_distinct(**kwargs: object) -> CompositionGenerator:
    """``complm`` that redraws known MP formulas and formulas already drawn in the same ``sample``
    call (up to 4 times): more distinct, novel formulas per draw."""
    return _complm(**{"name": "complm-distinct", "reject_known": True, "reject_seen": True, **kwargs})


def _complm_cond(**kwargs: object) -> CompositionGenerator:
    """``complm`` conditioned on a band-gap bin (default ``">5"``), plain conditional sampling
    (guidance 1: weight 2 halves the validity of '>5' samples, docs/complm.md), rejecting known MP formulas."""
    return _complm(**{"name": "complm-cond", "condition": ">5", "guidance": 1.0, "reject_known": True, **kwargs})
