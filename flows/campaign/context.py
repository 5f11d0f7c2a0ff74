"""What every stage of a campaign needs: the store, the config, lazily loaded models and tables,
and the per-stage seeds that make a rerun bit-identical."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alcore.autoencoder import CompositionAutoencoder, encode_formulas, load_weights
from alcore.composition import CompositionEncoder, element_formulas
from alcore.errors import EmptyPoolError
from alcore.hull_probability import DISABLED_NOTE, HullModel, fit_hull_model, hull_labels, off_model
from alcore.paths import WEIGHTS_DIR
from alcore.recommend import Screening
from alcore.validity import ValidityRules, check_validity_batch
from flows.config import CampaignConfig
from flows.datasets import band_gap_table, known_formulas
from flows.store import Store
from oracles.base import Oracle, Prediction


def seed_table(config: CampaignConfig, encoder: CompositionEncoder | None = None) -> pd.DataFrame:
    """The seed labels a config selects (columns ``formula``, ``value`` in eV): its data set, below
    ``seeds.max_gap`` if set, only formulas ``encoder`` can represent if given (the loop needs latent
    vectors), then ``seeds.n`` rows sampled with the campaign seed if set."""
    spec = config.seeds
    table = band_gap_table(spec.dataset)
    if spec.max_gap is not None:
        table = table[table["value"] < spec.max_gap]
    if encoder is not None:
        table = table[[encoder.representable(f)[0] for f in table["formula"]]]
    if spec.n is not None:
        table = table.sample(n=min(spec.n, len(table)), random_state=config.seed)
    return table


def composition_features(formulas: Sequence[str]) -> np.ndarray:
    """The learned P(E_hull)'s features of n formulas: the oracles' composition descriptors
    (:func:`oracles.descriptors.featurise`, (n, 301) float64; an all-NaN row where a formula cannot
    be featurised)."""
    from oracles.descriptors import featurise

    return np.asarray(featurise(list(formulas))[0], dtype=np.float64)


def stage_seed(campaign_seed: int, iteration: int, stage: str, attempt: int = 0) -> int:
    """A deterministic 31-bit seed for one stage (and attempt) of one iteration."""
    digest = hashlib.sha256(f"{campaign_seed}:{iteration}:{stage}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class CampaignContext:
    """Everything a stage needs: the store, the config, and lazily loaded models and tables."""

    store: Store
    config: CampaignConfig
    owner: str

    @property
    def name(self) -> str:
        """The campaign's name (its key in every collection)."""
        return self.config.name

    @cached_property
    def encoder(self) -> CompositionEncoder:
        """The one-hot encoder matching the autoencoder's element list."""
        return CompositionEncoder(self.config.element_list)

    @cached_property
    def autoencoder(self) -> tuple[CompositionAutoencoder, np.ndarray]:
        """``(model, latent box (2, d))`` from committed weights or a given .safetensors path."""
        ref = self.config.autoencoder
        path = Path(ref) if ref.endswith(".safetensors") else WEIGHTS_DIR / f"{ref}.safetensors"
        model, meta = load_weights(path)
        return model, np.asarray(meta["box"], dtype=np.float64)

    @cached_property
    def known(self) -> frozenset[str]:
        """Canonical formulas of known materials (for the novelty flag): the MP compounds of
        ``data/known`` plus every element, whose solid is known (that list holds compounds only)."""
        return known_formulas() | element_formulas()

    @cached_property
    def validity_rules(self) -> ValidityRules:
        """Validity limits of acquired formulas."""
        v = self.config.validity
        return ValidityRules(
            min_elements=v.min_elements,
            max_elements=v.max_elements,
            max_atoms=v.max_atoms,
            include_alloys=v.include_alloys,
            reject_organic=v.reject_organic,
        )

    @cached_property
    def oracle_domain(self) -> Any:
        """The band-gap oracle's applicability domain (:class:`oracles.domain.Domain`), or None when
        ``validity.applicability_domain`` is off or the oracle has no training recipe (lookup, external)."""
        if not self.config.validity.applicability_domain or self.config.oracle in {"lookup", "external"}:
            return None
        from flows.oracle_domain import oracle_domain

        return oracle_domain(self.config.oracle, self.oracle, WEIGHTS_DIR)

    def hull_model(self) -> HullModel:
        """P(E_hull <= t) learned from this campaign's structure verdicts as they stand now
        (:mod:`alcore.hull_probability`, settings :meth:`CampaignConfig.hull_settings`): the judged
        trials read through the store, one label per formula, the oracles' composition descriptors
        as features. An ``off`` model (with its reason) while it is disabled or there are too few
        verdicts or only one class."""
        settings = self.config.hull_settings()
        if not settings.enabled:
            return off_model(DISABLED_NOTE, settings.threshold)  # no store read
        labels = hull_labels(self.store.structure_verdicts(self.name), settings.threshold)
        if not labels:
            return off_model("no structure verdicts with an E_hull for this campaign yet", settings.threshold)
        return fit_hull_model(composition_features(list(labels)), np.array(list(labels.values())), settings)

    def eform_predict(self, formulas: list[str]) -> Prediction:
        """Formation energy (eV/atom, mean and std) of ``formulas`` by the shipped ``eform`` ensemble
        (decode-then-select's P(E_form < t) term)."""
        from oracles.registry import get_oracle

        return get_oracle("eform").predict(formulas)

    def screen(self, formulas: Sequence[str], hull: HullModel | None = None) -> Screening:
        """Judge decoded formulas for decode-then-select: predicted formation energy (eV/atom, the
        :meth:`eform_predict`: mean and std), the applicability-domain reasons of the band-gap
        oracle (ensemble std and distance to its training set; empty lists without a domain) and,
        with an active ``hull`` model (:meth:`hull_model`), P(E_hull <= t) per formula."""
        formulas = list(formulas)
        eform = self.eform_predict(formulas)
        reasons: list[list[str]] = [[] for _ in formulas]
        if self.oracle_domain is not None and formulas:
            std = self.oracle.predict(formulas).std
            verdicts = self.oracle_domain.check_many(formulas, std)
            reasons = [[f"outside the oracle's domain: {r}" for r in rs] for rs in verdicts]
        p_hull = hull.predict(composition_features(formulas)) if hull is not None and formulas else None
        return Screening(
            np.asarray(eform.mean, dtype=np.float64),
            np.asarray(eform.std, dtype=np.float64),
            reasons,
            p_hull=p_hull,
            hull_note=hull.note if hull is not None else None,
        )

    @cached_property
    def pool(self) -> tuple[list[str], np.ndarray]:
        """Pool mode: the candidate formulas (sorted, representable) and their latents ``(M, d)``:
        the ``pool`` data set's, or the valid members of the MongoDB pool ``pool_collection``.
        Raises :class:`EmptyPoolError` if none is left."""
        if self.config.pool_collection is None:
            formulas = list(band_gap_table(self.config.pool)["formula"])
        else:
            limits = self.config.validity  # size limits in the query, so SMACT sees only the rest
            stored = self.store.pool_formulas(self.config.pool_collection, limits.max_atoms, limits.max_elements)
            formulas = [v.formula for v in check_validity_batch(stored, self.validity_rules) if v.valid]
        formulas = sorted(f for f in formulas if self.encoder.representable(f)[0])
        if not formulas:
            where = (
                f"MongoDB pool {self.config.pool_collection!r}"
                if self.config.pool_collection
                else f"data set {self.config.pool!r}"
            )
            raise EmptyPoolError(
                f"{where} has no formula the campaign can choose (representable by "
                f"{self.config.element_list!r} and valid); generate or fill the pool first"
            )
        if self.config.pool_size is not None and self.config.pool_size < len(formulas):
            rng = np.random.default_rng(self.config.seed)
            formulas = sorted(rng.choice(formulas, size=self.config.pool_size, replace=False).tolist())
        return formulas, encode_formulas(self.autoencoder[0], self.encoder, formulas)

    @property
    def oracle_source(self) -> str:
        """What acquired labels record as their ``source``: the configured oracle's name."""
        return self.config.oracle

    def seed_rows(self) -> pd.DataFrame:
        """The seed labels of iteration 0 (columns ``formula``, ``value``): :func:`seed_table`."""
        return seed_table(self.config, self.encoder)

    def validation_rows(self) -> pd.DataFrame:
        """The fixed validation set of the retrain stage (columns ``formula``, ``value`` in eV)."""
        return band_gap_table(self.config.validation)

    @cached_property
    def oracle(self) -> Oracle:
        """The configured oracle by name (:func:`oracles.registry.get_oracle`); ``lookup`` gets the
        ``lookup_table`` data set as its table."""
        from oracles.registry import get_oracle

        if self.config.oracle == "lookup":
            table = band_gap_table(self.config.lookup_table)
            values = dict(zip(table["formula"], table["value"], strict=True))
            return get_oracle("lookup", table=values, table_name=self.config.lookup_table)
        if self.config.oracle == "external":
            return get_oracle("external", property=self.config.property)
        return get_oracle(self.config.oracle)

    def oracle_predict(self, formulas: list[str]) -> Prediction:
        """Label formulas with the configured oracle (:attr:`oracle`)."""
        return self.oracle.predict(formulas)

    def labelled(self) -> tuple[list[str], np.ndarray]:
        """All labelled formulas (sorted) and their values (eV) for the campaign's property."""
        formulas, y, _ = self.gp_labels()
        return formulas, y

    def gp_labels(self) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """What the GP is fitted on: labelled formulas (sorted), values (eV) and, per ``gp.label_noise``,
        each label's noise variance (eV^2: the stored std squared, missing/NaN std = 0) or None (learned
        homoscedastic noise). ``auto`` gives the variances when any label has a std > 0."""
        docs = self.store.labels(self.name, self.config.property)
        formulas = [d["formula"] for d in docs]
        y = np.array([d["value"] for d in docs], dtype=np.float64)
        std = np.array([d.get("std", 0.0) for d in docs], dtype=np.float64)
        std = np.where(np.isfinite(std), std, 0.0)
        mode = self.config.gp.label_noise
        use = mode == "oracle" or (mode == "auto" and bool(np.any(std > 0)))
        return formulas, y, std**2 if use else None
