"""CLI ``alflow structures``: template structures + CHGNet stability for formulas or a campaign's top candidates."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from alcore.errors import AlflowError

app = typer.Typer(help="Crystal structures by EMD template substitution, CHGNet relaxation and E_hull filtering.")
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


@app.command("run")
def run(
    formulas: list[str] = typer.Argument(
        None, help="Formulas to structure; omit to take the campaign's top candidates."
    ),
    campaign: str = typer.Option("adhoc", help="Campaign the structures belong to (and whose candidates to take)."),
    top_k: int = typer.Option(20, help="With no formulas: how many top candidates (by pred_mean) to structure."),
    k_templates: int = typer.Option(3, help="Trial structures per formula (EMD-nearest templates)."),
    e_hull_max: float = typer.Option(0.1, help="Largest E_hull (eV/atom) called near_hull (stable: on the hull)."),
    steps: int = typer.Option(200, help="Most relaxation steps per trial."),
    fmax: float = typer.Option(0.1, help="Force tolerance of the relaxation (eV/Å)."),
    runner: str = typer.Option("thread", help="Task runner: 'thread' or 'dask'."),
    workers: int = typer.Option(2, help="Parallel relaxations (threads or Dask worker processes)."),
    no_hull: bool = typer.Option(
        False, "--no-hull", help="Skip E_hull: verdicts are at best e_form_only (no stability claim; faster)."
    ),
    judge: str = typer.Option(
        "chgnet",
        help="Stability judge: chgnet, sevennet, funnel (CHGNet pre-screen, SevenNet judges), 7net-0/-l3i5/-mf-0.",
    ),
    redo: bool = typer.Option(False, help="Recompute trials that already have a verdict."),
    cif_dir: Path = typer.Option(None, help="Also export the campaign's CIFs to this folder."),
) -> None:
    """Propose, relax and judge structures; writes every trial to MongoDB ``structures``."""
    from flows.structures_flow import run_structures

    try:
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
            redo=redo,
            cif_dir=str(cif_dir) if cif_dir else None,
        )
    except AlflowError as exc:
        _fail(exc)
        return
    table = Table(title=f"structures: campaign {campaign}")
    for col in ("formulas", "trials", "relaxed", "skipped", "verdicts"):
        table.add_column(col)
    table.add_row(
        str(len(summary["formulas"])),
        str(summary["trials"]),
        str(summary["relaxed"]),
        str(summary["skipped"]),
        ", ".join(f"{k}: {v}" for k, v in sorted(summary["verdicts"].items())),
    )
    console.print(table)


@app.command("export-cif")
def export_cif(
    campaign: str = typer.Option(..., help="Campaign whose structures to export."),
    out: Path = typer.Option(..., help="Folder to write <formula>__<template_id>.cif files into."),
    stable_only: bool = typer.Option(False, help="Only structures with verdict 'stable'."),
) -> None:
    """Write the CIFs of a campaign's structures to a folder."""
    from flows.store import Store
    from flows.structures_flow import export_cifs

    try:
        store = Store.connect()
        try:
            n = export_cifs(store, campaign, out, ["stable"] if stable_only else None)
        finally:
            store.close()
    except AlflowError as exc:
        _fail(exc)
        return
    console.print(f"wrote {n} CIF file(s) to {out}")
