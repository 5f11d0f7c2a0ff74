"""Generation metrics of the composition LM beyond MatGAN's :func:`generators.matgan.generation_metrics`:
the share of samples that are valid AND novel AND unique (VNU), the checkpoint-selection criterion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def vnu(
    formulas: Sequence[str | None],
    novel_against: set[str] | frozenset[str],
    check_max: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Share of the ``len(formulas)`` samples that are SMACT-valid with >= 2 elements (default
    :class:`~alcore.validity.ValidityRules` with ``min_elements=2``), not in ``novel_against`` and
    distinct: the number of distinct valid novel formulas / samples (each distinct formula counts once).

    With ``check_max`` the validity of at most that many distinct novel formulas (uniform, seeded)
    is checked and the valid share is extrapolated (``vnu_se`` its binomial standard error).
    Returns ``{"vnu", "vnu_se", "distinct_novel_share", "valid_of_distinct_novel", "checked"}``."""
    from alcore.validity import ValidityRules, check_validity

    n = len(formulas)
    distinct = {f for f in formulas if f is not None}
    novel = sorted(f for f in distinct if f not in novel_against)
    pick = novel
    if check_max is not None and len(novel) > check_max:
        rng = np.random.default_rng(seed)
        pick = [novel[i] for i in rng.choice(len(novel), size=check_max, replace=False)]
    rules = ValidityRules(min_elements=2)
    ok = np.array([check_validity(f, rules).valid for f in pick], dtype=bool)
    p = float(ok.mean()) if len(pick) else 0.0
    dn = len(novel) / n if n else 0.0
    se = 0.0 if len(pick) == len(novel) else dn * float(np.sqrt(p * (1 - p) / max(len(pick), 1)))
    return {"vnu": dn * p, "vnu_se": se, "distinct_novel_share": dn, "valid_of_distinct_novel": p, "checked": len(pick)}


__all__ = ["vnu"]
