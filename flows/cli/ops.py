"""``alflow ops``: reports, and Prefect deployments (serve locally, or deploy to a work pool).

* ``report NAME --out DIR``: the campaign's PNG plots (no Prefect server needed).
* ``serve``: register the campaign, report, pool-generation, pool-screening and structures
  deployments and run them in this process (``prefect.serve``) until Ctrl-C.
* ``deploy-campaign CONFIG --cron "0 2 * * *"``: a scheduled deployment of the campaign flow on a
  ``process`` work pool, run by ``prefect worker start --pool alflow-process``.

Both deployment commands need a Prefect server (``PREFECT_API_URL``); see docs/deployment.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from alcore.errors import ConfigError
from flows.cli.common import console, examples, open_store, typer_app

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POOL = "alflow-process"

app = typer_app(
    "Operations: campaign reports and Prefect deployments (serve, deploy).",
    "alflow ops report demo --out runs/report",
    "alflow ops serve --interval 3600",
    "alflow ops deploy-campaign deploy/campaigns/demo.yaml --cron '0 2 * * *'",
)
REPORT_EXAMPLES = examples("alflow report demo --out runs/report", "alflow report demo --iteration 2")


def _store():
    return open_store()


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository root when inside it (portable between machines), else absolute."""
    p = path.resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def build_deployments(
    config: Path,
    cron: str | None = "0 2 * * *",
    interval: float | None = None,
    iterations: int | None = None,
    report_dir: str = "runs/reports",
    pool: str | None = None,
    pool_n: int = 100_000,
    with_structures: bool = False,
) -> list[Any]:
    """The ``RunnerDeployment`` objects ``serve`` runs: ``campaign/<name>`` (scheduled by ``cron`` or
    every ``interval`` s; ``iterations`` raises the target on each run so a nightly run continues the
    campaign), ``campaign-report/<name>`` (on demand), and on demand ``generate-pool/<pool>`` and
    ``screen-pool-job/<pool>`` (with ``pool``) and ``structures/<name>`` (with ``with_structures``)."""
    from flows.campaign import campaign_flow
    from flows.config import load_config
    from flows.deployments import screen_pool_job
    from flows.reporting import campaign_report_flow

    cfg = load_config(config)
    schedule: dict[str, Any] = {"interval": interval} if interval else ({"cron": cron} if cron else {})
    params: dict[str, Any] = {"config_path": str(config.resolve())}
    if iterations is not None:
        params["iterations"] = iterations
    deps = [
        campaign_flow.to_deployment(
            name=cfg.name,
            parameters=params,
            tags=["alflow", "campaign"],
            description=f"campaign {cfg.name} from {config}",
            concurrency_limit=1,
            **schedule,
        ),
        campaign_report_flow.to_deployment(
            name=cfg.name, parameters={"campaign_name": cfg.name, "out_dir": report_dir}, tags=["alflow", "report"]
        ),
    ]
    if pool:
        from flows.pipelines.pool import generate_pool_flow

        deps.append(
            generate_pool_flow.to_deployment(name=pool, parameters={"pool": pool, "n": pool_n}, tags=["alflow", "pool"])
        )
        deps.append(screen_pool_job.to_deployment(name=pool, parameters={"pool": pool}, tags=["alflow", "pool"]))
    if with_structures:
        from flows.pipelines.structures import structures_flow

        deps.append(
            structures_flow.to_deployment(
                name=cfg.name, parameters={"campaign": cfg.name, "top_k": 20}, tags=["alflow", "structures"]
            )
        )
    return deps


# ---------------------------------------------------------------------------- commands
@app.command("report", epilog=REPORT_EXAMPLES)
def report_cmd(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs (created).")] = Path("runs/report"),
    iteration: Annotated[
        int | None, typer.Option(min=1, help="Parity plot of this iteration's model (default latest).")
    ] = None,
) -> None:
    """Write a campaign's plots: discovery curve (best overall and best acquired), screening parity,
    latent-space map (PNG; band gaps are PBE-level DFT estimates)."""
    from flows.reporting import write_plots

    paths = write_plots(_store(), name, out, iteration)
    for p in paths:
        console.print(f"wrote {p}")


@app.command(
    "serve",
    epilog=examples(
        "alflow ops serve                                   # nightly demo campaign",
        "alflow ops serve --config my.yaml --interval 3600 --pool mine",
    ),
)
def serve_cmd(
    config: Annotated[Path, typer.Option(help="Campaign YAML served by the campaign deployment.")] = Path(
        "deploy/campaigns/demo.yaml"
    ),
    cron: Annotated[str, typer.Option(help="Cron schedule of the campaign deployment (UTC).")] = "0 2 * * *",
    interval: Annotated[float | None, typer.Option(help="Run every N seconds instead of the cron schedule.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Iteration target passed to each campaign run.")] = None,
    report_dir: Annotated[str, typer.Option(help="Where the report deployment writes PNGs.")] = "runs/reports",
    pool: Annotated[str | None, typer.Option(help="Also serve generate-pool and screen-pool for this pool.")] = None,
    pool_n: Annotated[int, typer.Option(help="Samples of the generate-pool deployment.")] = 100_000,
    structures: Annotated[bool, typer.Option("--structures", help="Also serve the structures flow.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many concurrent runs.")] = 1,
) -> None:
    """Register the deployments and run them from this process until Ctrl-C (needs PREFECT_API_URL)."""
    from prefect import serve

    deps = build_deployments(
        config,
        cron=cron,
        interval=interval,
        iterations=iterations,
        report_dir=report_dir,
        pool=pool,
        pool_n=pool_n,
        with_structures=structures,
    )
    console.print(f"serving {len(deps)} deployment(s): {', '.join(d.name for d in deps)}")
    serve(*deps, limit=limit)


@app.command(
    "deploy-campaign",
    epilog=examples(
        "alflow ops deploy-campaign deploy/campaigns/demo.yaml",
        "alflow ops deploy-campaign my.yaml --cron '30 1 * * *' --iterations 20",
    ),
)
def deploy_campaign_cmd(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    cron: Annotated[str, typer.Option(help="Cron schedule (UTC), e.g. '0 2 * * *' for nightly.")] = "0 2 * * *",
    pool: Annotated[str, typer.Option("--work-pool", help="Process work pool (created if missing).")] = DEFAULT_POOL,
    iterations: Annotated[int | None, typer.Option(help="Iteration target passed to each run.")] = None,
) -> None:
    """Create a scheduled deployment of the campaign flow on a process work pool (code from this checkout)."""
    from flows.campaign import campaign_flow
    from flows.config import load_config

    cfg = load_config(config)
    if not config.resolve().is_relative_to(ROOT):
        raise ConfigError(f"{config} must be inside the checkout {ROOT} so that the worker finds it")
    ensure_work_pool(pool)
    params: dict[str, Any] = {"config_path": _repo_relative(config)}
    if iterations is not None:
        params["iterations"] = iterations
    deployment_id = campaign_flow.from_source(
        source=str(ROOT), entrypoint="flows/campaign/runner.py:campaign_flow"
    ).deploy(
        name=cfg.name,
        work_pool_name=pool,
        cron=cron,
        parameters=params,
        tags=["alflow", "campaign"],
        concurrency_limit=1,
        build=False,
        push=False,
        print_next_steps=False,
    )
    console.print(
        f"deployment campaign/{cfg.name} ({deployment_id}) on pool {pool!r}, cron {cron!r}; "
        f"start a worker: prefect worker start --pool {pool}"
    )


def ensure_work_pool(name: str = DEFAULT_POOL) -> None:
    """Create the ``process`` work pool ``name`` on the Prefect server if it does not exist."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def ensure() -> None:
        async with get_client() as client:
            try:
                await client.read_work_pool(name)
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(name=name, type="process"))

    run_coro_as_sync(ensure())
