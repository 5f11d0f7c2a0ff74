"""``alflow complm ...``: train the composition language model and draw samples from it."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import ReplaceShipped, StoreWeights, Threads, console, examples, fail, table, typer_app

app = typer_app(
    "The composition language model (generator 'complm'): train it, sample it.",
    "alflow complm train --minutes 10",
    "alflow complm sample -n 20 --condition '>5'",
    "alflow pools generate-pool --pool lm --generator complm-novel -n 1000000",
)
GAP_BINS = "metal, 0-1.6, 1.6-3, 3-5, >5"


@app.command(
    "train",
    epilog=examples(
        "alflow complm train --minutes 10   # user data folder, resumable",
        "alflow complm train --minutes 45 --replace-shipped   # data/weights/complm",
        "alflow complm train --conditioned --minutes 30   # complm_cond",
    ),
)
def train_cmd(
    minutes: float = typer.Option(45.0, min=0.1, help="Wall-clock budget of this run (minutes)."),
    steps: int = typer.Option(3000, min=1, help="Total optimiser steps across resumed runs."),
    seed: int = typer.Option(None, help="Random seed (default: 0; the conditioned recipe's 1).", show_default=False),
    conditioned: bool = typer.Option(
        False, "--conditioned", help="Train the conditioned-sampling weights (complm_cond; docs/complm.md)."
    ),
    out: Path = typer.Option(
        None, help="Weights stem (default: <user data folder>/complm or complm_cond).", show_default=False
    ),
    replace_shipped: ReplaceShipped = False,
    threads: Threads = 1,
    store: StoreWeights = True,
) -> None:
    """Train (or continue) the composition LM on the SMACT-valid MP formulas (Prefect flow
    'train-complm'); the checkpoint with the best validation VNU share is saved."""
    from alcore.paths import WEIGHTS_DIR
    from flows.cli.autoencoder import weights_target
    from flows.pipelines.complm import train_complm_flow
    from flows.pipelines.training import TrainingTarget

    name = "complm_cond" if conditioned else "complm"
    target = weights_target(out, replace_shipped, WEIGHTS_DIR / name, name)
    where = TrainingTarget(out=str(target), threads=threads, store_weights=store)
    meta = train_complm_flow(minutes=minutes, steps=steps, seed=seed, target=where, conditioned=conditioned)
    console.print(f"saved {target}; {meta['steps']} steps; best validation eval: {meta['best']}")


@app.command(
    "sample",
    epilog=examples(
        "alflow complm sample -n 20",
        "alflow complm sample -n 20 --condition '>5' --guidance 2 --reject-known",
    ),
)
def sample_cmd(
    n: int = typer.Option(20, "-n", "--n", min=1, help="Number of samples."),
    seed: int = typer.Option(0, help="Seed (same seed, same samples)."),
    condition: str = typer.Option("any", help=f"Band-gap bin (MP PBE gap, eV): any, {GAP_BINS}."),
    eform: str = typer.Option("any", help="Formation-energy condition: any, neg (E_form < 0), pos."),
    temperature: float = typer.Option(1.0, min=0.05, help="Sampling temperature."),
    top_p: float = typer.Option(1.0, min=0.01, max=1.0, help="Nucleus (top-p) cutoff; 1 = off."),
    guidance: float = typer.Option(1.0, min=0.0, help="Classifier-free guidance weight; 1 = plain conditional."),
    reject_known: bool = typer.Option(False, "--reject-known", help="Redraw samples that are known MP formulas."),
    weights: Path = typer.Option(
        None, help="Weights stem (default: complm; complm_cond if conditioned).", show_default=False
    ),
) -> None:
    """Print N samples with their SMACT validity and whether they are known MP formulas."""
    from alcore.validity import check_validity
    from generators.complm import CompLMSampler
    from generators.matgan import known_formulas

    try:
        sampler = CompLMSampler.pretrained(
            weights,
            temperature=temperature,
            top_p=top_p,
            guidance=guidance,
            condition=condition,
            eform=eform,
            reject_known=reject_known,
        )
    except ValueError as exc:
        fail(str(exc))
    forms = sampler.sample(n, seed)
    known = known_formulas()
    rows = [(f, "yes" if check_validity(f).valid else "no", "yes" if f in known else "no") for f in forms]
    console.print(table(f"{len(forms)} samples (seed {seed})", ["formula", "SMACT-valid", "known (MP)"], rows))
