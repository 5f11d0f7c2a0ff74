"""``alflow bench ...``: benchmarks of the whole pipeline (the hold-out rediscovery benchmark).

The typer app :data:`bench_app` is registered in the main CLI as ``alflow bench``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from alcore.errors import AlflowError

bench_app = typer.Typer(help="Benchmarks of the whole pipeline (hold-out rediscovery).", no_args_is_help=True)
console = Console(soft_wrap=True)  # an error stays one line, whatever the terminal width


@bench_app.callback()
def _main() -> None:
    """Benchmarks of the whole pipeline."""


@bench_app.command("rediscovery")
def rediscovery_cmd(
    config: Path = typer.Argument(..., help="Benchmark YAML, e.g. deploy/benchmarks/rediscovery.yaml."),
    split_seed: list[int] = typer.Option(None, "--split-seed", help="Run only these split seeds (repeatable)."),
    json_out: Path = typer.Option(
        Path("benchmarks/results/rediscovery.json"), "--json", help="Scores, stage results and times."
    ),
    proposals_out: Path = typer.Option(
        Path("benchmarks/results/rediscovery_proposals.json.gz"),
        "--proposals",
        help="Every route's full ranked proposal list (.json or .json.gz).",
    ),
    png: Path = typer.Option(Path("docs/rediscovery_curves.png"), "--png", help="Rediscoveries@K curves per route."),
    mongodb_uri: str = typer.Option("", help="MongoDB URI (default: the configured or embedded store)."),
    database: str = typer.Option("", help="Database name (with --mongodb-uri)."),
) -> None:
    """Run or resume the hold-out rediscovery benchmark (Prefect flow ``rediscovery``), print its
    table and write the JSON, the ranked proposal lists and the PNG."""
    from flows.pipelines.rediscovery import ranked_lists, rediscovery_flow
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.pipelines.rediscovery_report import (
        format_goals,
        format_tables,
        format_times,
        goals,
        plot_curves,
        write_json,
        write_proposals,
    )
    from flows.store import Store

    os.environ.setdefault("ALFLOW_REPORTS", "0")  # per-iteration campaign plots are not needed here
    try:
        cfg = load_rediscovery_config(config, split_seeds=tuple(split_seed) if split_seed else None)
        result = rediscovery_flow(str(config), list(cfg.split_seeds), mongodb_uri or None, database or None)
        store = Store.open(mongodb_uri or None, database or None)
        try:
            lists = ranked_lists(store, cfg)
        finally:
            store.close()
    except AlflowError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(format_tables(result))
    typer.echo(format_times(result))
    typer.echo(format_goals(goals(result)))
    write_json(result, json_out, {"config_file": str(config), "goals": goals(result)})
    write_proposals(lists, proposals_out)
    plot_curves(result, png)
    typer.echo(f"-> {json_out}\n-> {proposals_out}\n-> {png}")
