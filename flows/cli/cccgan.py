"""``alflow cccgan ...``: train the composition-conditioned crystal GAN (Mg-Mn-O), generate and evaluate
structures for cell compositions, export CIFs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from flows.cli.common import ReplaceShipped, console, examples, fail, typer_app

app = typer_app(
    "Composition-conditioned crystal GAN for Mg-Mn-O (Kim et al. 2020).",
    "alflow cccgan generate Mg2Mn4O8 --n 20",
    "alflow cccgan export-cif cifs --verdict metastable",
)


@app.command(epilog=examples("alflow cccgan train --steps 50 --name /tmp/cccgan_try"))
def train(
    steps: int = typer.Option(300, help="training steps (critic + classifier + generator each)"),
    per_composition: int = typer.Option(100, help="augmentation target per composition (paper: 1000)"),
    seed: int = typer.Option(0, help="random seed"),
    lambda_dist: float = typer.Option(1.0, help="weight of the short-distance hinge (ours, not the paper's; 0: off)"),
    name: str = typer.Option("cccgan_mgmno", help="weights name"),
    weights_dir: Path = typer.Option(
        None, help="folder for <name>.safetensors (default: the user data folder)", show_default=False
    ),
    replace_shipped: ReplaceShipped = False,
) -> None:
    """Train the GAN on data/cccgan and write <name>.safetensors + .json.

    The shipped weights are only replaced with --replace-shipped; use new ones with
    `alflow cccgan generate --weights-dir DIR`."""
    import torch
    from tqdm import tqdm

    from alcore.paths import WEIGHTS_DIR
    from flows.cli.autoencoder import weights_target
    from generators.cccgan.dataset import load_dataset
    from generators.cccgan.train import TrainConfig, save_weights
    from generators.cccgan.train import train as run_train

    target = weights_target(weights_dir, replace_shipped, WEIGHTS_DIR, "")
    torch.set_num_threads(1)
    cfg = TrainConfig(max_steps=steps, per_composition=per_composition, seed=seed, lambda_dist=lambda_dist)
    ds = load_dataset()
    bar = tqdm(total=steps, desc="train")

    def prog(step: int, total: int, m: dict) -> None:
        bar.n = step + 1
        bar.set_postfix(w=f"{m['w']:.2f}", cls=f"{m['g_cls']:.2f}", dist=f"{m['g_dist']:.2f}")
        bar.refresh()

    result = run_train(ds.images, cfg, prog)
    bar.close()
    path = save_weights(result, ds.sha256, name, directory=target)
    console.print(f"saved {path}: {json.dumps(result.metrics)}")


@app.command(epilog=examples("alflow cccgan generate Mg2Mn4O8 --n 20", "alflow cccgan generate Mg2Mn3O7 --max-relax 0"))
def generate(
    compositions: list[str] = typer.Argument(..., help="cell formulas, e.g. Mg2Mn4O8 Mg2Mn3O7 (<= 8 Mg, 8 Mn, 12 O)"),
    n: int = typer.Option(50, help="structures generated per composition"),
    seed: int = typer.Option(0, help="noise seed"),
    max_relax: int = typer.Option(5, help="CHGNet relaxations per composition (0: skip stability)"),
    store: bool = typer.Option(False, "--store", help="also upsert into the database (runs the Prefect flow)"),
    name: str = typer.Option("cccgan_mgmno", help="weights name"),
    weights_dir: Path = typer.Option(
        None, help="folder of <name>.safetensors (default: data/weights)", show_default=False
    ),
) -> None:
    """Generate and evaluate structures; print validity, novelty, metastable and synthesisable counts."""
    import torch

    from flows.pipelines.cccgan import Evaluation

    torch.set_num_threads(1)
    evaluation = Evaluation(n=n, seed=seed, max_relax=max_relax)
    if store:
        from flows.pipelines.cccgan import cccgan_flow

        try:
            summary = cccgan_flow(
                compositions=list(compositions),
                evaluation=evaluation,
                weights=name,
                weights_dir=str(weights_dir) if weights_dir else None,
            )["summary"]
        except RuntimeError as exc:
            if "Prefect" not in str(exc):
                raise
            fail(f"{exc} Start a server (`prefect server start`, set PREFECT_API_URL) or rerun without --store.")
    else:
        from flows.pipelines.cccgan import evaluate_compositions, load_or_train

        if weights_dir is not None and not (weights_dir / f"{name}.safetensors").exists():
            fail(f"no weights {weights_dir / (name + '.safetensors')}; train them with alflow cccgan train")
        g, _ = load_or_train(name, directory=weights_dir, log=lambda m: None)
        summary, _ = evaluate_compositions(g, compositions, evaluation, log=lambda m: None)
    table = Table(title=f"cccgan: {n} per composition, seed {seed}, E_hull by CHGNet")
    cols = ["generated", "valid", "novel", "relaxed", "metastable", "synthesisable", "best_e_hull"]
    table.add_column("composition")
    table.add_column("in training")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for key, s in summary.items():
        best = "-" if s["best_e_hull"] is None else f"{1000 * s['best_e_hull']:.0f} meV"
        table.add_row(key, "yes" if s["in_training"] else "no", *[str(s[c]) for c in cols[:-1]], best)
    console.print(table)


@app.command(
    "export-cif", epilog=examples("alflow cccgan export-cif cifs", "alflow cccgan export-cif cifs --verdict metastable")
)
def export_cif(
    out: Path = typer.Argument(..., help="folder for the CIF files"),
    verdict: str = typer.Option("", help="only this verdict (e.g. metastable, synthesisable); empty: all valid"),
    campaign: str = typer.Option("cccgan:Mg-Mn-O", help="store campaign"),
) -> None:
    """Write stored cccgan structures from MongoDB as CIF files named by template_id."""
    from flows.cli.common import open_store

    st = open_store()
    try:
        docs = st.structures_of(campaign, verdicts=[verdict] if verdict else None, with_cif=True)
        docs = [d for d in docs if verdict or d.get("verdict") != "invalid"]
    finally:
        st.close()
    out.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (out / f"{d['template_id']}.cif").write_text(d["cif"])
    console.print(f"wrote {len(docs)} CIF files to {out}")
