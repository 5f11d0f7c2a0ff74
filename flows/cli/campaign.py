"""``alflow run`` and ``alflow campaign create|list|show``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    BAND_GAP_NOTE,
    EXIT_INTERRUPTED,
    check_output_file,
    console,
    err,
    examples,
    fmt,
    open_store,
    table,
    typer_app,
)

app = typer_app(
    "Create, list and inspect campaigns.",
    "alflow campaign create deploy/campaigns/demo.yaml",
    "alflow campaign list",
    "alflow campaign show demo",
)

RUN_EXAMPLES = examples(
    "alflow run deploy/campaigns/demo.yaml                 # run or resume",
    "alflow run deploy/campaigns/demo.yaml --iterations 5  # raise the target",
    "alflow run my.yaml --name trial-2 --json out.json     # another name",
)


def iteration_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Rows of the iterations table: best overall (seeds included) and best acquired beside it."""
    return [
        [
            r["iteration"],
            r["n_labels"],
            r.get("best_value"),
            r.get("best_formula"),
            r.get("best_acquired"),
            r.get("count_above_threshold"),
            r.get("acquired_above_threshold"),
            r.get("val_mae"),
            fmt(r.get("fit_s"), 1),
            fmt(r.get("acquire_s"), 1),
        ]
        for r in summary["iterations"]
    ]


ITERATION_COLUMNS = (
    ">iter",
    ">labels",
    ">best",
    "best formula",
    ">best acq.",
    ">hits",
    ">acq. hits",
    ">val MAE",
    ">fit s",
    ">acq. s",
)


def print_summary(summary: dict[str, Any]) -> None:
    """Print a campaign's per-iteration metrics and its top labels as tables (complete at 80 columns)."""
    console.print()
    console.print(table(f"campaign {summary['campaign']}: iterations", ITERATION_COLUMNS, iteration_rows(summary)))
    console.print(
        "eV. best: best label so far, seeds included; best acq.: best label the loop acquired; "
        "hits: labels >= the target threshold (acq.: acquired ones); " + BAND_GAP_NOTE + "."
    )
    top = [[d["formula"], d["value"], d.get("source"), d.get("iteration")] for d in summary["top"]]
    console.print()
    console.print(table("top labels", ("formula", ">band gap eV", "source", ">iter"), top))
    acquired = [
        [
            d["formula"],
            d["value"],
            "-" if d.get("eform_mean") is None else f"{d['eform_mean']:.2f}",
            "-" if d.get("p_feasible") is None else f"{d['p_feasible']:.2f}",
            d["iteration"],
        ]
        for d in summary.get("acquired", [])
    ]
    if acquired:
        console.print()
        cols = ("formula", ">band gap eV", ">E_form eV/at", ">P(feasible)", ">iter")
        console.print(table("best acquired candidates", cols, acquired))
        console.print("E_form: the eform ensemble's prediction; P(feasible) = P(E_form < threshold).")


def _precheck_run(config: Path, iterations: int | None, name: str | None) -> tuple[Any, str]:
    """Everything ``alflow run`` can refuse before Prefect starts: the config file, the database URI and
    connection, a stored campaign with a different config, another live runner. Returns (config, owner)."""
    from flows.config import load_config
    from flows.store import default_owner

    cfg = load_config(config, iterations=iterations, name=name)
    owner = default_owner()
    store = open_store()
    try:
        store.create_campaign(cfg.name, cfg.resolved())
        store.acquire_lease(cfg.name, owner, 60)  # raises CampaignLockedError naming the other runner
        store.release_lease(cfg.name, owner)
    finally:
        store.close()
    return cfg, owner


def mark_interrupted(name: str, owner: str, timeout_s: float = 3.0) -> None:
    """Best effort, within ``timeout_s``: if ``owner`` holds campaign ``name``'s lease, set its status to
    ``interrupted`` and release the lease (a stage left ``running`` is redone by the next run)."""

    def work() -> None:
        from flows.settings import get_settings
        from flows.store import connect_client
        from flows.store.campaigns import mark_interrupted as store_mark_interrupted

        s = get_settings()
        s.server_timeout_s = min(s.server_timeout_s, timeout_s)
        client = connect_client(s)
        try:
            store_mark_interrupted(client[s.database], name, owner)
        finally:
            client.close()

    t = threading.Thread(target=lambda: _quiet(work), daemon=True)
    t.start()
    t.join(timeout_s)


def _quiet(fn: Any) -> None:
    with contextlib.suppress(Exception):  # best effort while exiting
        fn()


def _stop_ephemeral_prefect() -> None:
    """Terminate the temporary Prefect server this process started, if any (it is a child process)."""
    mod = sys.modules.get("prefect.server.api.server")
    servers = getattr(getattr(mod, "SubprocessASGIServer", None), "_instances", {}) if mod else {}
    for server in list(servers.values()):
        proc = getattr(server, "server_process", None)
        if proc is not None and proc.poll() is None:
            _quiet(proc.terminate)


def install_interrupt_handler(name: str, owner: str, resume: str) -> None:
    """On Ctrl-C (SIGINT) or SIGTERM: one line saying how to resume, mark the campaign interrupted,
    stop the temporary Prefect server and exit with 130 at once (the state is what a kill leaves, which
    the crash-anywhere tests prove a rerun resumes exactly)."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        err.print(f"interrupted: campaign {name!r} stopped; resume with: {resume}", soft_wrap=True)
        sys.stderr.flush()
        mark_interrupted(name, owner)
        _stop_ephemeral_prefect()
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run_cmd(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file (see deploy/campaigns/).")],
    iterations: Annotated[int | None, typer.Option(min=1, help="Run up to this many iterations in all.")] = None,
    name: Annotated[str | None, typer.Option(help="Campaign name (overrides the file).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON here.")] = None,
) -> None:
    """Run or resume a campaign (a Prefect flow) and print its results table.

    The config, the database and the lease are checked before Prefect starts. Ctrl-C stops at once
    and prints the command that resumes the campaign where it stopped.
    """
    if json_out is not None:
        check_output_file(json_out)
    cfg, owner = _precheck_run(config, iterations, name)
    resume = f"alflow run {config}" + (f" --name {name}" if name else "")
    install_interrupt_handler(cfg.name, owner, resume)
    from flows.campaign import campaign_flow

    summary = campaign_flow(str(config), iterations=iterations, name=name)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print_summary(summary)
    if summary.get("structures", {}).get("table"):
        rows = [
            [d["formula"], d["template_id"], d.get("e_form"), d.get("e_hull"), d.get("verdict"), d.get("reason") or ""]
            for d in summary["structures"]["table"]
        ]
        cols = ("formula", "template", ">E_form eV/atom", ">E_hull eV/atom", "verdict", "reason")
        models = sorted({d["model"] for d in summary["structures"]["table"] if d.get("model")})
        console.print(
            table(f"structures of the top candidates ({', '.join(models) or cfg.structures.judge})", cols, rows)
        )
        console.print(f"CIFs in {summary['structures']['cif_dir']}")
    console.print(f"status: {summary['status']}")
    if json_out:
        json_out.write_text(json.dumps(summary, indent=1, default=str))
    # measured: with stdout redirected to a file the tables were lost at exit (the ephemeral
    # Prefect server's shutdown skips the normal flush), so flush explicitly
    sys.stdout.flush()


@app.command("create", epilog=examples("alflow campaign create deploy/campaigns/demo.yaml"))
def campaign_create(config: Annotated[Path, typer.Argument(help="Campaign YAML file.")]) -> None:
    """Register a campaign from its config without running it."""
    from flows.config import load_config

    cfg = load_config(config)
    doc = open_store().create_campaign(cfg.name, cfg.resolved())
    console.print(f"campaign {doc['name']!r} ({doc['status']})")


@app.command("list", epilog=examples("alflow campaign list"))
def campaign_list() -> None:
    """List campaigns with their status, iteration and iteration target."""
    rows = [
        [
            d["name"],
            d.get("status", "-"),
            d.get("iteration", 0),
            d.get("target_iterations", "-"),
            (d.get("lease") or {}).get("owner", "-"),
        ]
        for d in open_store().list_campaigns()
    ]
    console.print(table(None, ("name", "status", ">iteration", ">of", "runner (lease)"), rows))


@app.command("show", epilog=examples("alflow campaign show demo"))
def campaign_show(name: Annotated[str, typer.Argument(help="Campaign name.")]) -> None:
    """Show a campaign's iterations (metrics, stage states), its candidate and label counts and its top labels.

    Reads O(iterations) small documents (per-iteration count snapshots, the top-k hint), so it answers
    in well under a second at 100k labels and candidates (docs/reliability.md, "Load").
    """
    from flows.campaign import campaign_summary

    store = open_store()
    doc = store.get_campaign(name)
    console.print(
        f"{name}: status {doc.get('status')}, iteration {doc.get('iteration')}, "
        f"mode {doc['config']['mode']}, oracle {doc['config']['oracle']}"
    )
    its = store.iterations(name)
    stage_rows = [
        [it["iteration"], ", ".join(f"{k}:{v.get('status')}" for k, v in it.get("stages", {}).items())] for it in its
    ]
    console.print(table("stage states", (">iter", "stages"), stage_rows))
    counts = store.campaign_counts(name, its)
    for what, by in (("candidates", "status"), ("labels", "source")):
        parts = ", ".join(f"{k}: {n}" for k, n in counts[what].items()) or "none"
        console.print(f"{what} by {by}: {parts} (total {sum(counts[what].values())})")
    print_summary(campaign_summary(store, name))
