"""``alflow structures run|export-cif``: template structures + CHGNet stability for formulas or a
campaign's top candidates."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import console, examples, fail, open_store, require_structure_campaign, table, typer_app
from oracles.defaults import DEFAULT_JUDGE

app = typer_app(
    "Crystal structures by EMD template substitution, CHGNet relaxation and E_hull filtering.",
    "alflow structures run MgO LiF --no-hull",
    "alflow structures run --campaign demo --top-k 2",
    "alflow structures export-cif --campaign demo --out cifs",
)


@app.command(
    "run",
    epilog=examples(
        "alflow structures run MgO LiF --k-templates 2",
        "alflow structures run --campaign demo --top-k 2 --steps 100",
        "alflow structures run BaZrO3 --judge funnel",
        "alflow structures run Mg2Mn2O6 --generator cccgan --k-templates 20",
    ),
)
def run(
    formulas: list[str] = typer.Argument(
        None, help="Formulas to structure; omit to take the campaign's top candidates.", show_default=False
    ),
    campaign: str = typer.Option("adhoc", help="Campaign the structures belong to (and whose candidates to take)."),
    top_k: int = typer.Option(20, min=1, help="With no formulas: how many of the campaign's top candidates."),
    k_templates: int = typer.Option(
        3, min=1, help="Trial structures per formula (EMD-nearest templates, or GAN samples)."
    ),
    generator: str = typer.Option(
        "templates", help="Structure generator: templates (EMD substitution), cccgan (Mg-Mn-O), crystalgan (Pd-Ni-H)."
    ),
    e_hull_max: float = typer.Option(0.1, min=0, help="Largest E_hull (eV/atom) called near_hull (stable: on it)."),
    steps: int = typer.Option(200, min=1, help="Most relaxation steps per trial."),
    fmax: float = typer.Option(0.1, min=0, help="Force tolerance of the relaxation (eV/Å)."),
    runner: str = typer.Option("thread", help="Task runner: thread or dask."),
    workers: int = typer.Option(2, min=1, help="Parallel relaxations (threads or Dask worker processes)."),
    no_hull: bool = typer.Option(
        False, "--no-hull", help="Skip E_hull: verdicts are at best e_form_only (no stability claim; faster)."
    ),
    judge: str = typer.Option(
        DEFAULT_JUDGE,
        help="Stability judge: sevennet (7net-l3i5), chgnet, funnel (CHGNet pre-screen, SevenNet judges), "
        "7net-0/-l3i5/-mf-0.",
    ),
    redo: bool = typer.Option(False, "--redo", help="Recompute trials that already have a verdict."),
    cif_dir: Path = typer.Option(None, help="Also export the campaign's CIFs to this folder.", show_default=False),
) -> None:
    """Propose, relax and judge structures; writes every trial to the database ('structures')."""
    if runner not in ("thread", "dask"):
        fail(f"unknown runner {runner!r}; use thread or dask")
    if not formulas:
        store = open_store()
        try:
            store.get_campaign(campaign)  # a typo must not structure nothing (or start Prefect first)
        finally:
            store.close()
    from flows.pipelines.structures import run_structures

    summary = run_structures(
        formulas=list(formulas) if formulas else None,
        runner=runner,
        workers=workers,
        campaign=campaign,
        top_k=top_k,
        k_templates=k_templates,
        e_hull_max=e_hull_max,
        steps=steps,
        fmax=fmax,
        compute_hull=not no_hull,
        judge=judge,
        generator=generator,
        redo=redo,
        cif_dir=str(cif_dir) if cif_dir else None,
    )
    row = [
        len(summary["formulas"]),
        summary["trials"],
        summary["relaxed"],
        summary["skipped"],
        ", ".join(f"{k}: {v}" for k, v in sorted(summary["verdicts"].items())),
    ]
    console.print(
        table(f"structures: campaign {campaign}", (">formulas", ">trials", ">relaxed", ">skipped", "verdicts"), [row])
    )
    if summary["formulas"]:
        console.print("formulas: " + ", ".join(summary["formulas"]))


@app.command(
    "export-cif",
    epilog=examples(
        "alflow structures export-cif --campaign demo --out cifs",
        "alflow structures export-cif --campaign demo --out cifs --stable-only",
    ),
)
def export_cif(
    campaign: str = typer.Option(..., help="Campaign whose structures to export."),
    out: Path = typer.Option(..., help="Folder for <formula>__<verdict>__<template_id>.cif files."),
    stable_only: bool = typer.Option(False, "--stable-only", help="Only structures with verdict 'stable'."),
    include_failed: bool = typer.Option(
        False, "--include-failed", help="Also write failed trials (e.g. overlapping atoms)."
    ),
) -> None:
    """Write the CIFs of a campaign's structures to a folder (failed trials left out by default)."""
    from flows.pipelines.structures import export_cifs

    store = open_store()
    try:
        require_structure_campaign(store, campaign)
        out.mkdir(parents=True, exist_ok=True)
        n = export_cifs(store, campaign, out, ["stable"] if stable_only else None, include_failed)
    finally:
        store.close()
    console.print(f"wrote {n} CIF file(s) to {out}")
