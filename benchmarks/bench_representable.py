"""How many AGD and matbench formulas the one-hot matrix can hold, per element list (max count 8).

Run: ``python benchmarks/bench_representable.py`` (prints a table, writes results/representable.json).
Counts are over the files' rows (canonical formulas; reduced stoichiometry).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
from common import report  # noqa: E402

from alcore.composition import ELEMENT_LISTS, CompositionEncoder  # noqa: E402
from alcore.paths import data_file  # noqa: E402


def main() -> None:
    sets = {
        "agd_exp1_42k": pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv"))["composition"],
        "matbench_mp_gap": pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))["formula"],
    }
    rows = []
    for name, formulas in sets.items():
        formulas = list(formulas.astype(str))
        for lst in ELEMENT_LISTS:
            enc = CompositionEncoder(lst, max_count=8, max_elements=8)
            res = enc.encode_batch(formulas, errors="mask")
            why = Counter(r.split(" ")[0] + (" count" if "maximum" in r else "") for r in res.reasons if r)
            rows.append(
                {
                    "dataset": name,
                    "rows": len(formulas),
                    "element_list": lst,
                    "representable": int(res.valid.sum()),
                    "fraction": float(res.valid.mean()),
                    "top_reason": why.most_common(1)[0][0] if why else "",
                }
            )
    report("representable", rows)


if __name__ == "__main__":
    main()
