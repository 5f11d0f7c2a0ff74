"""``alflow``: one command line for campaigns, the database, labels, models and generators.

One module per command group (``campaign``, ``labels``, ``candidates``, ``db``, ``autoencoder``,
``oracles``, ``pools``, ``structures``, ``crystalgan``, ``cccgan``, ``ops``) and :mod:`flows.cli.common`
for what they share. :func:`main` is the console script (``alflow = "flows.cli:main"``): user errors
print one ``error:`` line and exit with status 2, Ctrl-C exits with 130 (see :mod:`flows.cli.common`).
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

import typer

from alcore.errors import AlflowError
from flows.cli import autoencoder, campaign, candidates, db, labels
from flows.cli.common import EXIT_INTERRUPTED, EXIT_USER_ERROR, AlflowGroup, examples, print_error

__all__ = ["app", "main", "prefect_environment", "version_string"]


def version_string() -> str:
    """``alflow X.Y.Z`` from the installed distribution's metadata (``pyproject.toml``)."""
    try:
        return f"alflow {metadata.version('alflow')}"
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "alflow (not installed)"


def _version(value: bool) -> None:
    if value:
        typer.echo(version_string())
        raise typer.Exit()


app = typer.Typer(
    help="Active-learning materials discovery: campaigns, database, labels, generators. Band gaps are "
    "PBE-level DFT estimates (the oracles are trained on Materials Project / AGD PBE gaps).",
    epilog=examples(
        "alflow run deploy/campaigns/demo.yaml   # run or resume the demo",
        "alflow campaign show demo               # iterations, best labels",
        "alflow candidates top demo -k 5         # best acquired candidates",
        "alflow oracles predict MgO LiF          # band-gap estimates",
        "alflow COMMAND --help                   # a command's help",
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    cls=AlflowGroup,
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the alflow version and exit."
    ),
) -> None:
    """Active-learning materials discovery."""


app.command("run", epilog=campaign.RUN_EXAMPLES)(campaign.run_cmd)
app.add_typer(db.app, name="db")
app.add_typer(campaign.app, name="campaign")
app.add_typer(labels.app, name="labels")
app.add_typer(candidates.app, name="candidates")
app.add_typer(autoencoder.app, name="autoencoder")


def _mount_generator_apps() -> None:
    """Mount the groups whose modules are heavier to import (oracles, pools, structures, crystal
    generators, ops) and ``alflow report``."""
    from flows.cli import bench, cccgan, complm, crystalgan, ops, oracles, pools, structures

    if getattr(app, "_alflow_mounted", False):
        return
    app.add_typer(oracles.app, name="oracles")
    app.add_typer(pools.app, name="pools")
    app.add_typer(structures.app, name="structures")
    app.add_typer(crystalgan.app, name="crystalgan")
    app.add_typer(cccgan.app, name="cccgan")
    app.add_typer(complm.app, name="complm")
    app.add_typer(ops.app, name="ops")
    app.add_typer(bench.app, name="bench")
    app.command("report", epilog=ops.REPORT_EXAMPLES)(ops.report_cmd)
    app._alflow_mounted = True  # type: ignore[attr-defined]


def prefect_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set Prefect's environment for the CLI (before Prefect is imported); returns what was set.

    Without ``PREFECT_API_URL`` the flows run on a temporary local ("ephemeral") Prefect server: its
    start-up gets 180 s (20 s is too short on 2 busy cores) and its telemetry is off
    (``PREFECT_SERVER_ANALYTICS_ENABLED=false``, ``DO_NOT_TRACK=1``), so an offline machine prints no
    telemetry error. A value the user set in the environment is never changed, and nothing is set
    for a user's own Prefect server (``PREFECT_API_URL`` set).
    """
    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return {}
    wanted = {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    done = {k: v for k, v in wanted.items() if k not in env}
    env.update(done)
    return done


def _torch_threads() -> None:
    """``ALFLOW_TORCH_THREADS`` (set by the container images) caps torch's threads through
    ``OMP_NUM_THREADS`` before torch is imported; an explicit ``OMP_NUM_THREADS`` wins."""
    value = os.environ.get("ALFLOW_TORCH_THREADS", "").strip()
    if value.isdigit() and int(value) >= 1:
        os.environ.setdefault("OMP_NUM_THREADS", value)


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


def _pymongo_uri_errors() -> tuple[type[Exception], ...]:
    from pymongo.errors import ConfigurationError

    return (ConfigurationError,)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI; user errors print one ``error:`` line and exit 2.

    ``argv`` defaults to ``sys.argv[1:]``. Exits with the command's status (``SystemExit``).
    """
    prefect_environment()
    _torch_threads()
    _mount_generator_apps()
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="alflow", standalone_mode=False)
    except AlflowError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USER_ERROR)
    except FileNotFoundError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USER_ERROR)
    except _pymongo_uri_errors() as exc:  # e.g. a malformed URI seen only by pymongo
        from flows.settings import get_settings

        print_error(f"database configuration: {type(exc).__name__}: {exc} ({get_settings().uri_masked()})")
        sys.exit(EXIT_USER_ERROR)
    except (typer.Abort, KeyboardInterrupt):
        print_error("aborted")
        sys.exit(EXIT_INTERRUPTED)
    except _click_exceptions() as exc:  # usage errors (unknown command, bad option) carry their exit codes
        exc.show()
        sys.exit(exc.exit_code)
    # standalone_mode=False: a command's typer.Exit(code) comes back as the return value, not raised
    sys.exit(result if isinstance(result, int) else 0)
