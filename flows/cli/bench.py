"""``alflow bench rediscovery``: benchmarks of the whole pipeline (the hold-out rediscovery benchmark)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from flows.cli.common import examples, typer_app

app = typer_app(
    "Benchmarks of the whole pipeline (hold-out rediscovery of real materials).",
    "alflow bench rediscovery deploy/benchmarks/rediscovery.yaml",
)


@app.callback()
def _group() -> None:
    """Benchmarks of the whole pipeline (a group even with one command: `alflow bench rediscovery`)."""


@app.command(
    "rediscovery",
    epilog=examples(
        "alflow bench rediscovery deploy/benchmarks/rediscovery.yaml",
        "alflow bench rediscovery deploy/benchmarks/rediscovery.yaml --split-seed 0",
    ),
)
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
    """Run or resume the hold-out rediscovery benchmark (Prefect flow 'rediscovery'), print its
    table and write the JSON, the ranked proposal lists and the PNG (docs/rediscovery.md)."""
    from flows.pipelines.rediscovery_report import run_and_report

    os.environ.setdefault("ALFLOW_REPORTS", "0")  # per-iteration campaign plots are not needed here
    run_and_report(
        config, split_seed or None, json_out, proposals_out, png, mongodb_uri or None, database or None, echo=typer.echo
    )
