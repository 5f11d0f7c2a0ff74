"""``alflow candidates top|export``: a campaign's acquired candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    BAND_GAP_NOTE,
    check_output_file,
    console,
    examples,
    open_store,
    table,
    typer_app,
    write_csv,
)

app = typer_app(
    "Inspect and export acquired candidates.",
    "alflow candidates top demo -k 5",
    "alflow candidates export demo candidates.csv",
)

EXPORT_COLUMNS = [
    "iteration",
    "rank",
    "formula",
    "status",
    "label",
    "label_source",
    "valid",
    "novel",
    "gp_mean",
    "gp_std",
    "acq_value",
    "eform_mean",
    "eform_std",
    "p_feasible",
    "chemsys",
    "reasons",
]


def labels_by_formula(store: Any, campaign: str, prop: str = "band_gap") -> dict[str, dict[str, Any]]:
    """The campaign's labels keyed by formula (one indexed query)."""
    return {d["formula"]: d for d in store.labels(campaign, prop)}


@app.command("export", epilog=examples("alflow candidates export demo candidates.csv"))
def candidates_export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    path: Annotated[Path, typer.Argument(help="Output CSV.")],
) -> None:
    """Export a campaign's candidates (accepted and rejected, with reasons) to CSV, with their label
    (eV, PBE-level DFT estimate) where they have one."""
    check_output_file(path)
    store = open_store()
    doc = store.get_campaign(campaign)
    labels = labels_by_formula(store, campaign, doc["config"].get("property", "band_gap"))
    rows = []
    for c in store.candidates(campaign):
        lab = labels.get(c["formula"])
        labelled = lab is not None and c.get("status") == "labelled"
        rows.append(
            {**c, "label": lab["value"] if labelled else None, "label_source": lab.get("source") if labelled else None}
        )
    write_csv(path, rows, EXPORT_COLUMNS)
    console.print(f"wrote {len(rows)} candidate(s) to {path}")


@app.command(
    "top",
    epilog=examples(
        "alflow candidates top demo",
        "alflow candidates top demo -k 5 --novel",
        "alflow candidates top demo --min-value 3",
    ),
)
def candidates_top(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many.")] = 10,
    novel_only: Annotated[bool, typer.Option("--novel", help="Only formulas not in the MP snapshot.")] = False,
    min_value: Annotated[float | None, typer.Option(help="Only labels at or above this value (eV).")] = None,
) -> None:
    """The best labelled candidates of a campaign, with their validity and novelty.

    "novel" means absent from the shipped Materials Project formula snapshot, not unknown to chemistry.
    """
    store = open_store()
    store.get_campaign(campaign)
    cands = {c["formula"]: c for c in store.candidates(campaign, status="labelled")}
    labels = sorted(store.labels_of(campaign, list(cands)).values(), key=lambda d: (-d["value"], d["formula"]))
    docs = [
        d
        for d in labels
        if (min_value is None or d["value"] >= min_value) and (not novel_only or cands[d["formula"]].get("novel"))
    ][:k]
    rows = [
        [
            d["formula"],
            d["value"],
            f"{_f(cands[d['formula']].get('gp_mean'))} ± {_f(cands[d['formula']].get('gp_std'))}",
            cands[d["formula"]]["iteration"],
            "yes" if cands[d["formula"]].get("novel") else "no",
        ]
        for d in docs
    ]
    cols = ("formula", ">band gap eV", ">GP mean ± std", ">iter", "novel")
    console.print(table(f"top {k} candidates of {campaign}", cols, rows))
    console.print(BAND_GAP_NOTE + "; novel: not in the shipped Materials Project formula list.")


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"
