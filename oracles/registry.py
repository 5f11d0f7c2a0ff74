"""Named oracles and the cheap trainable screening model used inside the active-learning loop.

``get_oracle(name)`` returns a ready :class:`~oracles.base.Oracle` backed by shipped weights in
``data/weights``; ``fit_screening_model(formulas, values, ...)`` trains a small ResNet ensemble
from scratch in seconds; ``screening_state``/``load_screening_model`` (and the oracle's
``to_bytes``/``from_bytes``) round-trip it through ``Store.save_model``/``Store.load_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alcore.errors import ConfigError
from alcore.paths import WEIGHTS_DIR
from oracles.base import Oracle
from oracles.defaults import DEFAULT_BANDGAP_ORACLE  # the default band-gap oracle (docs/oracles.md)
from oracles.lookup import ExternalOracle, LookupOracle
from oracles.resnet import ResNetOracle, TrainConfig, train_resnet

#: name -> (weights file stem in data/weights, property, one-line description)
SHIPPED: dict[str, tuple[str, str, str]] = {
    "resnet-agd": (
        "bandgap_resnet_agd",
        "band_gap",
        "ResNet ensemble (5 x 5-hidden-layer residual MLP) on descriptors, AGD Exp-1 42k band gaps "
        "(agd_test_500 held out); the AGD experiments' oracle",
    ),
    "resnet-mp-gap": (
        "bandgap_resnet_mp_gap",
        "band_gap",
        "ResNet ensemble trained on matbench_mp_gap fold-0 training rows (80 %)",
    ),
    "eform": (
        "eform_resnet_mp",
        "e_form",
        "ResNet ensemble on matbench_mp_e_form, ground-state (min) polymorph per formula, 90 % split",
    ),
    "resnet-mp-union": (
        "bandgap_resnet_mp_union",
        "band_gap",
        "ResNet ensemble (10 x 5-hidden-layer residual MLP, L1) on matbench_mp_gap + the AGD formulas it "
        "lacks; calibrated sigma; the default band-gap oracle until session 13",
    ),
    "resnet-mp-ext": (
        "bandgap_resnet_mp_ext",
        "band_gap",
        "ResNet ensemble (15 x 5-hidden-layer residual MLP, L1; members' median) on matbench_mp_gap with the "
        "richer 'ext' descriptor (+ element fractions, atomic-orbital band edges); calibrated sigma; the default "
        "band-gap oracle of new campaigns",
    ),
}
ALIASES: dict[str, str] = {
    "default": DEFAULT_BANDGAP_ORACLE,
    "bandgap": DEFAULT_BANDGAP_ORACLE,
    "resnet-eform": "eform",
}

#: Defaults of the in-loop screening model (small: a few seconds for 2,300 labels on 1 core).
SCREENING_DEFAULTS = TrainConfig(
    hidden=64, n_layers=5, n_members=5, epochs=60, batch_size=128, lr=3e-3, weight_decay=1e-4, loss="l1"
)
#: Optimiser steps the screening model aims for when ``epochs`` is not given (sets epochs from N).
SCREENING_STEPS = 500


#: Oracles built from run-time inputs rather than shipped weights: name -> (options, description).
BUILT: dict[str, tuple[str, str]] = {
    "lookup": ("table (formula -> value), table_name", "the tabulated value of each formula (closed world)"),
    "external": ("property", "labels made outside alflow and imported with `alflow labels import`"),
    "roost": ("weights (stem of a RoostOracle.save)", "a Roost ensemble trained with oracles.roost.train_roost"),
}
#: Where ``get_oracle("roost")`` looks when no ``weights`` stem is given.
DEFAULT_ROOST_STEM = "bandgap_roost"


def known_oracles() -> dict[str, str]:
    """``{name: description}`` of every name :func:`get_oracle` accepts (aliases included)."""
    out = {n: d for n, (_, _, d) in SHIPPED.items()}
    out.update({n: d for n, (_, d) in BUILT.items()})
    out.update({a: f"alias of {t}" for a, t in ALIASES.items()})
    return out


@lru_cache(maxsize=8)
def _load_shipped(name: str) -> ResNetOracle:
    stem, _, _ = SHIPPED[name]
    return ResNetOracle.load(WEIGHTS_DIR / stem, name=name)


def _check_options(name: str, given: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(given) - allowed
    if unknown:
        allowed_list = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"get_oracle({name!r}) got unknown option(s) {sorted(unknown)}; allowed: {allowed_list}")


def _build(name: str, options: dict[str, Any]) -> Oracle:
    """The oracles of :data:`BUILT`, made from their options."""
    if name == "lookup":
        _check_options(name, options, {"table", "table_name", "property"})
        if "table" not in options:
            raise ConfigError("get_oracle('lookup') needs table={formula: value} (e.g. a data set's band gaps)")
        table_name = options.get("table_name", "lookup")
        return LookupOracle(options["table"], name=f"lookup:{table_name}", property=options.get("property", "band_gap"))
    if name == "external":
        _check_options(name, options, {"property"})
        return ExternalOracle(property=options.get("property", "band_gap"))
    _check_options(name, options, {"weights"})
    from oracles.roost import RoostOracle

    return RoostOracle.load(options.get("weights", WEIGHTS_DIR / DEFAULT_ROOST_STEM), name="roost")


def get_oracle(name: str, **options: Any) -> Oracle:
    """The oracle registered under ``name`` (see :func:`known_oracles`), ready to ``predict``.

    Shipped ResNet ensembles (and their aliases) take ``weights_dir`` (load the same-named weights from
    another folder, uncached); ``lookup`` needs ``table`` ({canonical formula: value}); ``external``
    takes ``property``; ``roost`` takes ``weights`` (a stem written by ``RoostOracle.save``).
    Returns an object with ``.name``, ``.property`` and ``.predict(formulas) -> Prediction``.
    Raises :class:`ConfigError` for an unknown name or option (listing the known ones) and
    ``FileNotFoundError``/:class:`CorruptModelError` if weights are missing or damaged.
    """
    key = ALIASES.get(name, name)
    if key in BUILT:
        return _build(key, options)
    if key not in SHIPPED:
        raise ConfigError(f"unknown oracle {name!r}; known oracles: {', '.join(sorted(known_oracles()))}")
    _check_options(name, options, {"weights_dir"})
    if "weights_dir" in options:
        return ResNetOracle.load(Path(options["weights_dir"]) / SHIPPED[key][0], name=key)
    return _load_shipped(key)


def fit_screening_model(
    formulas: Sequence[str],
    values: Sequence[float],
    seed: int = 0,
    epochs: int | None = None,
    *,
    property: str = "band_gap",
    name: str = "screening",
    threads: int | None = 1,
    progress: Callable[[int, float], None] | None = None,
    **config: Any,
) -> ResNetOracle:
    """Train the small in-loop screening ensemble from scratch on the given labels.

    Takes N formulas and N labels (eV for band gaps, eV/atom for ``property="e_form"``), a seed and
    optionally ``epochs`` and other :class:`~oracles.resnet.TrainConfig` fields (``hidden``,
    ``n_members``, ``lr``, ...); defaults are :data:`SCREENING_DEFAULTS`. ``threads`` sets torch's
    thread count for the call (restored afterwards; None leaves it alone). Returns a
    :class:`ResNetOracle` (``predict`` gives ensemble mean/std). Same seed + threads -> same weights.
    """
    from dataclasses import replace

    cfg = replace(SCREENING_DEFAULTS, seed=int(seed), **config)
    if epochs is not None:
        cfg = replace(cfg, epochs=int(epochs))
    n = len(formulas)
    if "batch_size" not in config:  # small label sets: smaller batches, still several per epoch
        cfg = replace(cfg, batch_size=int(np.clip(n // 8, 16, SCREENING_DEFAULTS.batch_size)))
    if epochs is None and n > 0:  # about SCREENING_STEPS optimiser steps whatever N is
        steps = max(1, n // cfg.batch_size)
        cfg = replace(cfg, epochs=int(np.clip(np.ceil(SCREENING_STEPS / steps), 10, 400)))
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return train_resnet(formulas, values, property=property, name=name, config=cfg, progress=progress)
    finally:
        torch.set_num_threads(old)


def screening_state(oracle: ResNetOracle) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, metadata)`` of a screening model, ready for ``Store.save_model(kind, sd, md)``."""
    return oracle.state_dict(), oracle.metadata()


def load_screening_model(state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> ResNetOracle:
    """Inverse of :func:`screening_state` (e.g. with ``Store.load_model(sha)``'s output); predictions
    are bit-identical to the saved model's. Extra metadata keys (store bookkeeping) are ignored."""
    return ResNetOracle.from_state(state, metadata)
