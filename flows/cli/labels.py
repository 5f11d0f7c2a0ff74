"""``alflow labels import|export``: external labels (e.g. DFT) in, a campaign's labels out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import check_output_file, console, err, examples, open_store, typer_app, write_csv

app = typer_app(
    "Import and export labels (band gaps in eV, PBE-level DFT estimates unless imported otherwise).",
    "alflow labels import demo dft.csv",
    "alflow labels export demo labels.csv",
)

UNITS = {"band_gap": "eV"}


@app.command(
    "import",
    epilog=examples(
        "alflow labels import demo dft.csv               # formula,value[,std]",
        "alflow labels import demo dft.csv --skip-bad    # import the good rows",
        "alflow labels import demo extra.csv --allow-new # not candidates too",
    ),
)
def labels_import(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    path: Annotated[Path, typer.Argument(help="CSV with columns formula,value[,std].")],
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Import the good rows even if some are bad.")] = False,
    source: Annotated[str, typer.Option(help="Label source recorded with each row.")] = "external",
    allow_new: Annotated[
        bool, typer.Option("--allow-new", help="Accept formulas that are not candidates of the campaign.")
    ] = False,
) -> None:
    """Import labels (e.g. from DFT) into a campaign, validated row by row; nothing is written if a row
    is bad (unless --skip-bad)."""
    from alcore.composition import CompositionEncoder
    from alcore.errors import ImportValidationError
    from flows.pipelines.label_import import parse_label_csv
    from flows.settings import get_settings

    store = open_store()
    doc = store.get_campaign(campaign)
    parsed = parse_label_csv(path, get_settings().max_import_bytes)
    encoder = CompositionEncoder(doc["config"]["element_list"])
    usable = []
    for r in parsed.records:
        ok, why = encoder.representable(r["formula"])
        if ok:
            usable.append(r)
        else:
            parsed.problems.append((r["line"], f"{r['formula']}: {why}; the campaign's encoder cannot use it"))
    parsed.records = usable
    if not allow_new:
        candidates = {c["formula"]: c for c in store.candidates(campaign)}
        kept = []
        for r in parsed.records:
            if r["formula"] in candidates:
                kept.append({**r, "iteration": candidates[r["formula"]]["iteration"]})
            else:
                parsed.problems.append(
                    (
                        r["line"],
                        f"{r['formula']} is not a candidate of campaign {campaign!r} "
                        "(use --allow-new to add it as an extra label)",
                    )
                )
        parsed.records = kept
    parsed.problems.sort()
    if parsed.problems and not skip_bad:
        raise ImportValidationError(str(path), parsed.problems)
    records = [{k: v for k, v in r.items() if k != "line"} | {"source": source} for r in parsed.records]
    n = store.upsert_labels(campaign, records, doc["config"]["property"])
    console.print(f"imported {n} label(s) into {campaign!r}; skipped {len(parsed.problems)} bad row(s)")
    for line, msg in parsed.problems[:20]:
        err.print(f"  line {line}: {msg}", soft_wrap=True)


@app.command("export", epilog=examples("alflow labels export demo labels.csv"))
def labels_export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    path: Annotated[Path, typer.Argument(help="Output CSV.")],
) -> None:
    """Export a campaign's labels to CSV: formula, value, unit, property, std, source, iteration.

    Band gaps are in eV; the oracles' and seed data's gaps are PBE-level DFT estimates."""
    check_output_file(path)
    store = open_store()
    doc = store.get_campaign(campaign)
    prop = doc["config"].get("property", "band_gap")
    rows = [{**r, "property": prop, "unit": UNITS.get(prop, "")} for r in store.labels(campaign, prop)]
    write_csv(path, rows, ["formula", "value", "unit", "property", "std", "source", "iteration"])
    console.print(f"wrote {len(rows)} label(s) to {path}")
