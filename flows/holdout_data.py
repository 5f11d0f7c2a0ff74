"""The MP data in ``data/`` as the hold-out benchmark sees it: the formula universe, DFT band gaps
(max over polymorphs) and formation energies (min over polymorphs) per canonical formula, and the
split of that universe (:mod:`alcore.holdout`).

The universe is the union of the canonical formulas of ``bandgap/matbench_mp_gap.csv``,
``formation/matbench_mp_e_form.csv`` and ``known/mp_formulas_spacegroups.csv``. Parsing the 360k
rows takes ~15 s, so the tables are cached per process and, with ``cache_dir``, on disk keyed by
the sha256 of the three files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

from alcore.composition import canonical_formula
from alcore.errors import InvalidFormulaError
from alcore.holdout import HoldoutSplit, make_split
from alcore.paths import data_file

#: (folder, file, formula column) of every table of the universe.
MP_FILES: tuple[tuple[str, str, str], ...] = (
    ("bandgap", "matbench_mp_gap.csv", "formula"),
    ("formation", "matbench_mp_e_form.csv", "formula"),
    ("known", "mp_formulas_spacegroups.csv", "pretty_formula"),
)


@lru_cache(maxsize=1)
def mp_data_sha256() -> str:
    """sha256 (hex) over the bytes of the three MP files of the universe (identifies the data)."""
    h = hashlib.sha256()
    for folder, name, _ in MP_FILES:
        h.update(data_file(folder, name).read_bytes())
    return h.hexdigest()


def _canon(f: object) -> str | None:
    try:
        return canonical_formula(str(f))
    except InvalidFormulaError:
        return None


def _build_tables() -> dict[str, dict]:
    gap: dict[str, float] = {}
    df = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))
    for f, v in zip(df["formula"], df["target"].astype(float), strict=True):
        c = _canon(f)
        if c is not None and math.isfinite(v):
            gap[c] = max(gap.get(c, -math.inf), float(v))
    eform: dict[str, float] = {}
    df = pd.read_csv(data_file("formation", "matbench_mp_e_form.csv"))
    for f, v in zip(df["formula"], df["target"].astype(float), strict=True):
        c = _canon(f)
        if c is not None and math.isfinite(v):
            eform[c] = min(eform.get(c, math.inf), float(v))
    known = {
        c for c in map(_canon, pd.read_csv(data_file("known", "mp_formulas_spacegroups.csv"))["pretty_formula"]) if c
    }
    return {"gap": gap, "eform": eform, "known": sorted(known)}


_TABLES: dict[str, dict] = {}


def mp_tables(cache_dir: str | Path | None = None) -> dict[str, dict]:
    """``{"gap": {formula: eV (max over polymorphs)}, "eform": {formula: eV/atom (min)}, "known":
    [formulas of the MP structure list]}``, canonical formulas. Cached per process and, with
    ``cache_dir``, in ``<cache_dir>/mp-tables-<sha12>.json.gz``."""
    sha = mp_data_sha256()
    if sha in _TABLES:
        return _TABLES[sha]
    path = Path(cache_dir) / f"mp-tables-{sha[:12]}.json.gz" if cache_dir else None
    if path is not None and path.exists():
        tables = json.loads(gzip.decompress(path.read_bytes()))
    else:
        tables = _build_tables()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(gzip.compress(json.dumps(tables).encode()))
            tmp.replace(path)
    _TABLES[sha] = tables
    return tables


def mp_universe(cache_dir: str | Path | None = None) -> frozenset[str]:
    """Every canonical formula of the MP data in ``data/`` (the three files of :data:`MP_FILES`)."""
    t = mp_tables(cache_dir)
    return frozenset(t["gap"]) | frozenset(t["eform"]) | frozenset(t["known"])


@lru_cache(maxsize=16)
def _split(protocol: str, seed: int, fraction: float, sha: str, cache_dir: str | None) -> HoldoutSplit:
    return make_split(mp_universe(cache_dir), protocol, fraction, seed)


def mp_split(
    protocol: str = "system", seed: int = 0, fraction: float = 0.2, cache_dir: str | Path | None = None
) -> HoldoutSplit:
    """The hold-out split of :func:`mp_universe` (cached per process)."""
    return _split(protocol, int(seed), float(fraction), mp_data_sha256(), str(cache_dir) if cache_dir else None)


def hidden_gaps(split: HoldoutSplit, cache_dir: str | Path | None = None) -> dict[str, float | None]:
    """Every hidden formula -> its DFT band gap in eV (max over polymorphs), None where unknown."""
    gap = mp_tables(cache_dir)["gap"]
    return {f: gap.get(f) for f in split.hidden}


def visible_gap_table(split: HoldoutSplit, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The visible MP band gaps as a DataFrame (``formula``, ``value`` eV, max over polymorphs), sorted by formula."""
    gap = mp_tables(cache_dir)["gap"]
    rows = sorted((f, v) for f, v in gap.items() if f in split.visible)
    return pd.DataFrame(rows, columns=["formula", "value"])
