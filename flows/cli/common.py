"""What every ``alflow`` command shares: the one error path, exit codes, tables, CSV, the store.

**Exit codes** (documented in docs/reliability.md):

* ``0``: success.
* ``2`` (:data:`EXIT_USER_ERROR`): anything the user can fix: a bad argument or option (click's usage
  errors use 2 as well), a bad file, an unknown name, an unreachable or malformed database URI. One line
  ``error: ...`` on stderr, never a traceback, nothing written.
* ``130`` (:data:`EXIT_INTERRUPTED`): stopped by Ctrl-C (128 + SIGINT), with one line on how to resume.
* ``1``: an unexpected failure (a bug): Python prints the traceback.

Commands report a user error by raising any :class:`~alcore.errors.AlflowError` or by calling
:func:`fail`; :func:`flows.cli.main` turns both into the one line and exit status 2.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from alcore.errors import AlflowError, CampaignNotFoundError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

#: the unit shown wherever a band gap is shown: the labels and oracles are trained on / give
#: Materials-Project-style PBE-level DFT band gaps, which underestimate experimental gaps
BAND_GAP_UNIT = "eV, PBE-level DFT estimate"
BAND_GAP_NOTE = "band gaps are PBE-level DFT estimates (typically below experimental gaps)"

#: the options every training command shares (``name: Alias = default``); ``--replace-shipped`` goes
#: with the command's ``--out`` through :func:`flows.cli.autoencoder.weights_target`
ReplaceShipped = Annotated[
    bool, typer.Option("--replace-shipped", help="Write into data/weights, replacing the shipped weights.")
]
Threads = Annotated[int, typer.Option(min=1, help="torch threads.")]
StoreWeights = Annotated[
    bool, typer.Option("--store/--no-store", help="Also store the trained model(s) in the database (GridFS).")
]

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UserError(AlflowError):
    """A user error raised by the CLI itself (bad option value, unknown name)."""


def fail(message: str | BaseException) -> NoReturn:
    """Stop the command with a user error: ``main`` prints ``error: MESSAGE`` and exits with 2."""
    if isinstance(message, AlflowError):
        raise message
    raise UserError(str(message))


class AlflowGroup(TyperGroup):
    """A command group that turns a user error of any sub-command into the one error line and exit
    status 2, whether the CLI runs through :func:`flows.cli.main` or is invoked directly (tests)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (AlflowError, FileNotFoundError) as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_USER_ERROR) from None


def examples(*lines: str) -> str:
    """An ``Examples:`` epilog for a command's ``--help`` (each line shown as written)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def typer_app(help_text: str, *example_lines: str, **kwargs: Any) -> typer.Typer:
    """A command group: plain (click) help that wraps instead of truncating at 80 columns, the group's
    help on a bare call, an ``Examples:`` section, and no pretty tracebacks."""
    return typer.Typer(
        help=help_text,
        epilog=examples(*example_lines) if example_lines else None,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        cls=AlflowGroup,
        **kwargs,
    )


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for None, floats with ``digits`` decimals, else ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], **kwargs: Any) -> Table:
    """A rich table whose headers and cells wrap (never ``…``) so it stays complete at 80 columns.

    Column names may carry a leading ``>`` to right-align them (numbers)."""
    kwargs.setdefault("box", None)
    kwargs.setdefault("pad_edge", False)
    kwargs.setdefault("show_edge", False)
    kwargs.setdefault("header_style", "bold underline")
    t = Table(title=title, title_justify="left", **kwargs)
    for col in columns:
        right = col.startswith(">")
        name = col.lstrip(">")
        # a header wraps between words, never inside one
        t.add_column(name, justify="right" if right else "left", overflow="fold", min_width=max(map(len, name.split())))
    for row in rows:
        t.add_row(*(fmt(c) for c in row))
    return t


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write ``columns`` of ``rows`` to the CSV file ``path`` (list values joined with ``;``)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: (";".join(r[c]) if isinstance(r.get(c), list) else r.get(c)) for c in columns})


def check_output_file(path: Path) -> None:
    """Refuse an output file whose folder does not exist (before anything is computed)."""
    if path.is_dir():
        fail(f"{path} is a folder; give a file name such as {path / 'out.csv'}")
    if not path.parent.exists():
        fail(f"folder {path.parent} does not exist; create it first")


def open_store():  # -> flows.store.Store
    """The configured store (embedded by default); a malformed URI is a one-line user error."""
    from flows.settings import get_settings
    from flows.store import Store

    settings = get_settings()
    settings.check_uri()
    return Store.connect(settings)


def require_campaign(store: Any, name: str) -> dict[str, Any]:
    """The campaign document ``name``; :class:`CampaignNotFoundError` (listing the known ones) if absent."""
    return store.get_campaign(name)


def require_structure_campaign(store: Any, name: str) -> None:
    """Refuse a campaign name that has no structures (a typo would otherwise export nothing)."""
    known = store.structure_campaigns()
    if name not in known:
        raise CampaignNotFoundError(
            f"no structures for campaign {name!r}; campaigns with structures: {known or 'none'}"
        )


def print_error(message: str) -> None:
    """The single error line on stderr."""
    from rich.markup import escape

    one_line = " / ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err.print(f"[red]error:[/red] {escape(one_line)}", soft_wrap=True)
    sys.stderr.flush()
