"""Training data of the composition LM: the SMACT-valid MP formulas (MatGAN's ``matgan-valid`` set),
their MP DFT band-gap bins and E_form signs (condition tokens), and a seeded validation split."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from alcore.composition import canonical_formula
from alcore.errors import InvalidFormulaError
from alcore.paths import data_file
from generators.complm.tokens import EF_NEG, EF_NULL, EF_POS, FormulaTokenizer, gap_token
from generators.matgan.data import data_hash, training_formulas


@lru_cache(maxsize=2)
def _per_formula(kind: str) -> dict[str, float]:
    """Canonical formula -> one MP DFT value: the median band gap (eV) of its polymorphs
    (``gap``, matbench_mp_gap) or the lowest formation energy (eV/atom, ``eform``, matbench_mp_e_form)."""
    import pandas as pd

    path = (
        data_file("bandgap", "matbench_mp_gap.csv")
        if kind == "gap"
        else data_file("formation", "matbench_mp_e_form.csv")
    )
    df = pd.read_csv(path)
    vals: dict[str, list[float]] = {}
    for f, y in zip(df["formula"].astype(str), df["target"].astype(float), strict=True):
        try:
            c = canonical_formula(f)
        except InvalidFormulaError:
            continue
        vals.setdefault(c, []).append(y)
    agg = np.median if kind == "gap" else np.min
    return {k: float(agg(v)) for k, v in vals.items()}


def mp_gaps() -> dict[str, float]:
    """Canonical formula -> median MP PBE band gap (eV) over its polymorphs (matbench_mp_gap; no
    experimental data)."""
    return _per_formula("gap")


def mp_eforms() -> dict[str, float]:
    """Canonical formula -> lowest MP formation energy (eV/atom) over its polymorphs."""
    return _per_formula("eform")


@dataclass
class LMData:
    """Token matrices of the training and validation formulas: ``train``/``val`` (N, L) int64 with
    the condition tokens from the MP labels (null where a formula has none), the formula lists, and
    the sha256 of the full (sorted) formula list."""

    train: np.ndarray
    val: np.ndarray
    train_formulas: list[str]
    val_formulas: list[str]
    data_sha256: str
    label_counts: dict[str, int]


def condition_labels(formulas: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) gap tokens and (N,) E_form tokens of canonical formulas from the MP DFT labels."""
    gaps, efs = mp_gaps(), mp_eforms()
    g = np.array([gap_token(gaps.get(f)) for f in formulas], dtype=np.int64)
    e = np.array([EF_NULL if f not in efs else (EF_NEG if efs[f] < 0 else EF_POS) for f in formulas], dtype=np.int64)
    return g, e


def lm_data(
    tokenizer: FormulaTokenizer,
    formulas: list[str] | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
) -> LMData:
    """Tokenise ``formulas`` (default: the 45,043 SMACT-valid MP training formulas of MatGAN,
    :func:`generators.matgan.training_formulas` with ``valid_only``) and split off a seeded
    ``val_fraction`` for validation (early stopping / checkpoint selection)."""
    forms = sorted(formulas) if formulas is not None else training_formulas(valid_only=True)
    g, e = condition_labels(forms)
    toks = tokenizer.encode_batch(forms, g, e)
    perm = np.random.default_rng(seed).permutation(len(forms))
    n_val = int(round(val_fraction * len(forms)))
    vi, ti = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    counts = {name: int((g == GAP_NULL_ + 1 + i).sum()) for i, name in enumerate(_bins())}
    counts["gap_unlabelled"] = int((g == GAP_NULL_).sum())
    counts["eform_neg"] = int((e == EF_NEG).sum())
    counts["eform_pos"] = int((e == EF_POS).sum())
    counts["eform_unlabelled"] = int((e == EF_NULL).sum())
    return LMData(toks[ti], toks[vi], [forms[i] for i in ti], [forms[i] for i in vi], data_hash(forms), counts)


def _bins() -> list[str]:
    from generators.complm.tokens import gap_bin_names

    return gap_bin_names()


from generators.complm.tokens import GAP_NULL as GAP_NULL_  # noqa: E402

__all__ = ["LMData", "condition_labels", "lm_data", "mp_eforms", "mp_gaps"]
