"""``alflow``: one command line for campaigns, the database, labels, models and generators.

User errors (any :class:`~alcore.errors.AlflowError`) print one line and exit with status 2,
never a stack trace.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from alcore.errors import AlflowError

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Active-learning materials discovery: campaigns, database, labels, generators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The embedded database (SecantusDB) used when ALFLOW_MONGODB_URI is unset.", no_args_is_help=True
)
campaign_app = typer.Typer(help="Create, list and inspect campaigns.", no_args_is_help=True)
labels_app = typer.Typer(help="Import and export labels.", no_args_is_help=True)
candidates_app = typer.Typer(help="Inspect and export acquired candidates.", no_args_is_help=True)
ae_app = typer.Typer(help="The composition autoencoder (latent search space).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")
app.add_typer(labels_app, name="labels")
app.add_typer(candidates_app, name="candidates")
app.add_typer(ae_app, name="autoencoder")


def _mount_generator_apps() -> None:
    """Mount the sub-commands of oracles, pools, structures and the crystal generators."""
    from flows import cli_cccgan, cli_crystalgan, cli_ops, cli_oracles, cli_pools, cli_structures

    app.add_typer(cli_oracles.app, name="oracles")
    app.add_typer(cli_pools.app, name="pools")
    app.add_typer(cli_structures.app, name="structures")
    app.add_typer(cli_crystalgan.app, name="crystalgan")
    app.add_typer(cli_cccgan.app, name="cccgan")
    app.add_typer(cli_ops.app, name="ops")
    app.command("report")(cli_ops.report_cmd)


def _store():
    from flows.store import Store

    return Store.connect()


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_summary(summary: dict[str, Any]) -> None:
    """Print a campaign's per-iteration metrics and its top labels as tables."""
    table = Table(title=f"campaign {summary['campaign']}: iterations")
    for col in (
        "iter",
        "labels",
        "best (eV)",
        "best formula",
        "hits >= thr",
        "acquired hits",
        "val MAE (eV)",
        "fit s",
        "acquire s",
    ):
        table.add_column(col, justify="right")
    for r in summary["iterations"]:
        table.add_row(
            str(r["iteration"]),
            str(r["n_labels"]),
            _fmt(r["best_value"]),
            str(r["best_formula"]),
            str(r["count_above_threshold"]),
            str(r["acquired_above_threshold"]),
            _fmt(r.get("val_mae")),
            _fmt(r.get("fit_s"), 1),
            _fmt(r.get("acquire_s"), 1),
        )
    console.print(table)
    top = Table(title="top labels")
    for col in ("formula", "value (eV)", "source", "iteration"):
        top.add_column(col)
    for d in summary["top"]:
        top.add_row(d["formula"], _fmt(d["value"]), str(d.get("source")), str(d.get("iteration")))
    console.print(top)


# ---------------------------------------------------------------------------- campaigns
@app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file (see deploy/campaigns/).")],
    iterations: Annotated[int | None, typer.Option(help="Run up to this many iterations (overrides the file).")] = None,
    name: Annotated[str | None, typer.Option(help="Campaign name (overrides the file).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON here.")] = None,
) -> None:
    """Run or resume a campaign (a Prefect flow) and print its results table."""
    from flows.campaign import campaign_flow

    summary = campaign_flow(str(config), iterations=iterations, name=name)
    print_summary(summary)
    if summary.get("structures", {}).get("table"):
        st = Table(title="structures of the top candidates (CHGNet)")
        for col in ("formula", "template", "E_form (eV/atom)", "E_hull (eV/atom)", "verdict", "reason"):
            st.add_column(col)
        for d in summary["structures"]["table"]:
            st.add_row(
                d["formula"],
                str(d["template_id"]),
                _fmt(d.get("e_form")),
                _fmt(d.get("e_hull")),
                str(d.get("verdict")),
                str(d.get("reason") or ""),
            )
        console.print(st)
        console.print(f"CIFs in {summary['structures']['cif_dir']}")
    console.print(f"status: [bold]{summary['status']}[/bold]")
    if json_out:
        json_out.write_text(json.dumps(summary, indent=1, default=str))
    # measured: with stdout redirected to a file the tables were lost at exit (the ephemeral
    # Prefect server's shutdown skips the normal flush), so flush explicitly
    sys.stdout.flush()


@campaign_app.command("create")
def campaign_create(config: Annotated[Path, typer.Argument(help="Campaign YAML file.")]) -> None:
    """Register a campaign from its config without running it."""
    from flows.config import load_config

    cfg = load_config(config)
    doc = _store().create_campaign(cfg.name, cfg.resolved())
    console.print(f"campaign {doc['name']!r} ({doc['status']})")


@campaign_app.command("list")
def campaign_list() -> None:
    """List campaigns with their status and iteration."""
    table = Table()
    for col in ("name", "status", "iteration", "target", "lease owner"):
        table.add_column(col)
    for d in _store().list_campaigns():
        table.add_row(
            d["name"],
            d.get("status", "-"),
            str(d.get("iteration", 0)),
            str(d.get("target_iterations", "-")),
            str((d.get("lease") or {}).get("owner", "-")),
        )
    console.print(table)


@campaign_app.command("show")
def campaign_show(name: Annotated[str, typer.Argument(help="Campaign name.")]) -> None:
    """Show a campaign's iterations (metrics, stage states), its candidate and label counts and its top labels.

    Reads O(iterations) small documents (per-iteration count snapshots, the top-k hint), so it answers
    in well under a second at 100k labels and candidates (docs/reliability.md, "Load").
    """
    from flows.campaign import campaign_summary

    store = _store()
    doc = store.get_campaign(name)
    console.print(
        f"[bold]{name}[/bold]: status {doc.get('status')}, iteration {doc.get('iteration')}, "
        f"mode {doc['config']['mode']}, oracle {doc['config']['oracle']}"
    )
    stages = Table(title="stage states")
    stages.add_column("iteration")
    stages.add_column("stages")
    its = store.iterations(name)
    for it in its:
        stages.add_row(
            str(it["iteration"]), ", ".join(f"{k}:{v.get('status')}" for k, v in it.get("stages", {}).items())
        )
    console.print(stages)
    counts = store.campaign_counts(name, its)
    for what, by in (("candidates", "status"), ("labels", "source")):
        parts = ", ".join(f"{k}: {n}" for k, n in counts[what].items()) or "none"
        console.print(f"{what} by {by}: {parts} (total {sum(counts[what].values())})")
    print_summary(campaign_summary(store, name))


# ---------------------------------------------------------------------------- labels and candidates
@labels_app.command("import")
def labels_import(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    path: Annotated[Path, typer.Argument(help="CSV with columns formula,value[,std].")],
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Import the good rows even if some are bad.")] = False,
    source: Annotated[str, typer.Option(help="Label source recorded with each row.")] = "external",
    allow_new: Annotated[
        bool, typer.Option("--allow-new", help="Accept formulas that are not candidates of the campaign.")
    ] = False,
) -> None:
    """Import labels (e.g. from DFT) into a campaign, validated row by row."""
    from alcore.composition import CompositionEncoder
    from alcore.errors import ImportValidationError
    from flows.pipelines.label_import import parse_label_csv
    from flows.settings import get_settings

    store = _store()
    doc = store.get_campaign(campaign)
    parsed = parse_label_csv(path, get_settings().max_import_bytes)
    encoder = CompositionEncoder(doc["config"]["element_list"])
    usable = []
    for r in parsed.records:
        ok, why = encoder.representable(r["formula"])
        if ok:
            usable.append(r)
        else:
            parsed.problems.append((0, f"{r['formula']}: {why}; the campaign's encoder cannot use it"))
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
                        0,
                        f"{r['formula']} is not a candidate of campaign {campaign!r} "
                        "(use --allow-new to add it as an extra label)",
                    )
                )
        parsed.records = kept
    if parsed.problems and not skip_bad:
        raise ImportValidationError(str(path), parsed.problems)
    n = store.upsert_labels(campaign, [{**r, "source": source} for r in parsed.records], doc["config"]["property"])
    console.print(f"imported {n} label(s) into {campaign!r}; skipped {len(parsed.problems)} bad row(s)")
    for line, msg in parsed.problems[:20]:
        err.print(f"  line {line}: {msg}")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write ``columns`` of ``rows`` to the CSV file ``path`` (list values joined with ``;``)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: (";".join(r[c]) if isinstance(r.get(c), list) else r.get(c)) for c in columns})


@labels_app.command("export")
def labels_export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    path: Annotated[Path, typer.Argument(help="Output CSV.")],
) -> None:
    """Export a campaign's labels to CSV (formula, value, std, source, iteration)."""
    rows = _store().labels(campaign)
    write_csv(path, rows, ["formula", "value", "std", "source", "iteration"])
    console.print(f"wrote {len(rows)} label(s) to {path}")


@candidates_app.command("export")
def candidates_export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    path: Annotated[Path, typer.Argument(help="Output CSV.")],
) -> None:
    """Export a campaign's candidates (accepted and rejected, with reasons) to CSV."""
    rows = _store().candidates(campaign)
    write_csv(
        path,
        rows,
        ["iteration", "rank", "formula", "status", "valid", "novel", "gp_mean", "gp_std", "acq_value", "reasons"],
    )
    console.print(f"wrote {len(rows)} candidate(s) to {path}")


@candidates_app.command("top")
def candidates_top(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    k: Annotated[int, typer.Option("-k", help="How many.")] = 10,
    novel_only: Annotated[bool, typer.Option("--novel", help="Only formulas not in Materials Project.")] = False,
    min_value: Annotated[float | None, typer.Option(help="Only labels at or above this value (eV).")] = None,
) -> None:
    """The best labelled candidates of a campaign, with their validity and novelty."""
    store = _store()
    cands = {c["formula"]: c for c in store.candidates(campaign, status="labelled")}
    labels = sorted(store.labels_of(campaign, list(cands)).values(), key=lambda d: (-d["value"], d["formula"]))
    rows = [
        d
        for d in labels
        if (min_value is None or d["value"] >= min_value) and (not novel_only or cands[d["formula"]].get("novel"))
    ][:k]
    table = Table(title=f"top {k} candidates of {campaign}")
    for col in ("formula", "label (eV)", "GP mean ± std", "iteration", "novel"):
        table.add_column(col)
    for d in rows:
        c = cands[d["formula"]]
        table.add_row(
            d["formula"],
            _fmt(d["value"]),
            f"{_fmt(c.get('gp_mean'))} ± {_fmt(c.get('gp_std'))}",
            str(c["iteration"]),
            "yes" if c.get("novel") else "no",
        )
    console.print(table)


# ---------------------------------------------------------------------------- database
@db_app.command("start")
def db_start() -> None:
    """Start the embedded database (or report the one already running)."""
    from flows.settings import get_settings
    from flows.store.embedded import start_server

    s = get_settings()
    server = start_server(s.data_dir, s.embedded_port)
    console.print(f"embedded database running: pid {server.pid}, {server.uri}, data {server.storage_path}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded database (SIGTERM; waits for it to exit)."""
    from flows.settings import get_settings
    from flows.store.embedded import stop_server

    stopped = stop_server(get_settings().data_dir)
    console.print("stopped" if stopped else "no embedded database was running")


@db_app.command("status")
def db_status() -> None:
    """Say which database is configured and whether it answers."""
    from flows.settings import get_settings
    from flows.store.embedded import running_server

    s = get_settings()
    if s.embedded:
        server = running_server(s.data_dir)
        console.print(
            f"embedded: {'running, pid ' + str(server.pid) + ', ' + server.uri if server else 'not running'}"
            f" (data {s.data_dir})"
        )
    else:
        store = _store()
        console.print(f"MongoDB {s.uri_masked()}: reachable, database {store.database_name}")


# ---------------------------------------------------------------------------- autoencoder
@ae_app.command("train")
def ae_train(
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 8,
    element_list: Annotated[str, typer.Option(help="Element list: matgan85, agd87, mp89, z103.")] = "agd87",
    out: Annotated[Path | None, typer.Option(help="Output .safetensors (default: the committed weights).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Retrain the composition autoencoder on the committed MP formulas."""
    from flows.pipelines.autoencoder import train_autoencoder_flow

    meta = train_autoencoder_flow(epochs=epochs, element_list=element_list, seed=seed, out=str(out) if out else None)
    console.print(f"held-out exact reconstruction: {meta['metrics']['val_exact']:.2%}")


def main() -> None:
    """Console-script entry point: run the CLI, turning user errors into one-line messages."""
    import os

    # Prefect's ephemeral API (no PREFECT_API_URL) must start within this; 20 s is too short on
    # 2 busy cores (measured: timed out under load).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    _mount_generator_apps()
    try:
        app(standalone_mode=False)
    except AlflowError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except SystemExit:
        raise
    except _click_exceptions() as exc:  # usage errors (unknown command, bad option) carry their exit codes
        exc.show()
        sys.exit(exc.exit_code)


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Click's ``ClickException`` classes: typer >= 0.29 vendors click as ``typer._click``."""
    import importlib

    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
