"""``alflow autoencoder train``: the composition autoencoder (latent search space)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import ReplaceShipped, console, examples, fail, typer_app

app = typer_app(
    "The composition autoencoder (latent search space).",
    "alflow autoencoder train --epochs 2",
)

ELEMENT_LISTS = ("matgan85", "agd87", "mp89", "z103")


def weights_target(out: Path | None, replace_shipped: bool, shipped: Path, default_name: str) -> Path:
    """Where a training command writes: ``out``; else the shipped file with ``--replace-shipped``; else
    ``default_name`` in the user's weights folder (``ALFLOW_WEIGHTS_DIR``, default ``<data dir>/weights``)."""
    from flows.settings import get_settings

    if out is not None and replace_shipped:
        fail("give either --out or --replace-shipped, not both")
    if out is not None:
        return out
    if replace_shipped:
        return shipped
    return get_settings().user_weights_dir / default_name


@app.command(
    "train",
    epilog=examples(
        "alflow autoencoder train --epochs 2       # user data folder",
        "alflow autoencoder train --out /tmp/ae.safetensors",
        "alflow autoencoder train --replace-shipped   # data/weights",
    ),
)
def ae_train(
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 8,
    element_list: Annotated[str, typer.Option(help=f"Element list: {', '.join(ELEMENT_LISTS)}.")] = "agd87",
    out: Annotated[Path | None, typer.Option(help="Output .safetensors (default: the user data folder).")] = None,
    replace_shipped: ReplaceShipped = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Retrain the composition autoencoder on the committed MP formulas.

    Writes to the user data folder unless --out or --replace-shipped is given; campaigns use the
    committed weights unless their config's 'autoencoder' names the new file."""
    from alcore.paths import WEIGHTS_DIR
    from flows.pipelines.autoencoder import train_autoencoder_flow

    if element_list not in ELEMENT_LISTS:
        fail(f"unknown element list {element_list!r}; known: {', '.join(ELEMENT_LISTS)}")
    name = f"autoencoder_{element_list}.safetensors"
    target = weights_target(out, replace_shipped, WEIGHTS_DIR / name, name)
    meta = train_autoencoder_flow(epochs=epochs, element_list=element_list, seed=seed, out=str(target))
    console.print(f"held-out exact reconstruction: {meta['metrics']['val_exact']:.2%}; weights {target}")
