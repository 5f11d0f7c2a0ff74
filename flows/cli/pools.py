"""``alflow pools ...``: train MatGAN, generate pools, screen them, show the best members."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from flows.cli.common import ReplaceShipped, StoreWeights, Threads, console, examples, fail, table, typer_app, write_csv
from oracles.defaults import DEFAULT_BANDGAP_ORACLE

app = typer_app(
    "Generated formula pools: train MatGAN, generate a pool, screen it, list the top members.",
    "alflow pools generate-pool --pool mine -n 100000",
    "alflow pools screen-pool --pool mine --gap-min 3",
    "alflow pools top --pool mine -k 10",
)
#: names accepted by generators.base.get_generator (listed here so --help needs no import)
GENERATORS = "matgan, matgan-valid, latent-random, complm, complm-novel, complm-distinct, complm-cond"
ORACLES = "resnet-mp-ext (default), resnet-mp-union, resnet-agd, eform (see `alflow oracles list`)"


def _with_bar(desc: str, run: Callable[..., Any], unit: str = "batch", **kwargs: Any) -> Any:
    """``run(**kwargs, progress=update)`` under a tqdm bar that ``update(done, total)`` moves."""
    bar = tqdm(desc=desc, unit=unit, unit_scale=unit != "batch")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return run(**kwargs, progress=update)
    finally:
        bar.close()


@app.command(
    "train-matgan",
    epilog=examples(
        "alflow pools train-matgan --gan-minutes 2 --ae-minutes 1",
        "alflow pools train-matgan --replace-shipped   # data/weights",
    ),
)
def train_matgan_cmd(
    gan_minutes: float = typer.Option(8.0, help="Wall-clock budget of the WGAN-GP training (minutes)."),
    ae_minutes: float = typer.Option(4.0, help="Wall-clock budget of the autoencoder training (minutes)."),
    epochs: int = typer.Option(200, min=1, help="Most GAN epochs (the time budget usually stops training first)."),
    seed: int = typer.Option(0, help="Random seed of both trainings."),
    out: Path = typer.Option(None, help="Folder for the weights (default: the user data folder).", show_default=False),
    replace_shipped: ReplaceShipped = False,
    threads: Threads = 1,
    valid_only: bool = typer.Option(
        False,
        "--valid-only",
        help="Train on the SMACT-valid MP formulas only (generator 'matgan-valid' reads data/weights/matgan_valid).",
    ),
    ch: int = typer.Option(8, help="Channel width of generator, critic and autoencoder."),
    lr: float = typer.Option(1e-3, help="GAN learning rate (may change when resuming: fine-tune lower)."),
    checkpoint: str = typer.Option(
        "",
        help="GAN checkpoint file, resumed if it exists. Default: <out>/checkpoints/matgan_gan.pt.",
        show_default=False,
    ),
    store: StoreWeights = True,
) -> None:
    """Train MatGAN and its reachability autoencoder on the MP formulas and write the weights
    (Prefect flow 'train-matgan').

    The GAN training is checkpointed: running the command again continues it (EPOCHS is the total).
    The shipped weights in data/weights are only replaced with --replace-shipped."""
    from alcore.paths import WEIGHTS_DIR
    from flows.cli.autoencoder import weights_target
    from flows.pipelines.matgan import train_matgan_flow
    from flows.pipelines.training import TrainingTarget
    from generators.matgan import GANConfig

    target = weights_target(out, replace_shipped, WEIGHTS_DIR / ("matgan_valid" if valid_only else ""), "")
    if not replace_shipped and out is None and valid_only:
        target = target / "matgan_valid"

    gan = GANConfig(epochs=epochs, seed=seed, ch=ch, lr=lr, time_budget_s=gan_minutes * 60)
    where = TrainingTarget(out=str(target), checkpoint=checkpoint or None, threads=threads, store_weights=store)
    meta = train_matgan_flow(gan, ae_minutes=ae_minutes, valid_only=valid_only, target=where)
    console.print(f"saved in {target}; metrics: {meta['metrics']}")


@app.command(
    "generate-pool",
    epilog=examples(
        "alflow pools generate-pool --pool mine -n 100000",
        "alflow pools generate-pool --pool mine --max-batches 2   # resumable",
        "alflow pools generate-pool --pool lm --generator complm-distinct",
        "alflow pools generate-pool --pool g --generator complm-cond --condition 3-5",
    ),
)
def generate_pool_cmd(
    pool: str = typer.Option(..., "--pool", help="Pool name (documents are keyed by pool + formula)."),
    n: int = typer.Option(1_000_000, "-n", "--n", min=1, help="Number of samples to draw."),
    generator: str = typer.Option("matgan", help=f"Generator: {GENERATORS}."),
    seed: int = typer.Option(0, help="Seed; batch k uses a seed derived from (seed, k)."),
    batch_size: int = typer.Option(50_000, min=1, help="Samples per batch (one marker per batch; resume unit)."),
    max_batches: int = typer.Option(0, min=0, help="Stop after this many new batches (0: run to the end)."),
    condition: str = typer.Option(
        None,
        help="complm generators only: band-gap bin to condition on (metal, 0-1.6, 1.6-3, 3-5, >5).",
        show_default=False,
    ),
    eform: str = typer.Option(None, help="complm generators only: E_form condition (neg, pos).", show_default=False),
    guidance: float = typer.Option(
        None, help="complm generators only: classifier-free guidance weight (1 = plain).", show_default=False
    ),
    temperature: float = typer.Option(None, help="complm generators only: sampling temperature.", show_default=False),
) -> None:
    """Generate (or resume) a pool of N samples and store its distinct canonical formulas."""
    from flows.pipelines.pool import generate_pool_flow
    from generators.complm.tokens import condition_tokens

    kwargs = {
        k: v
        for k, v in {"condition": condition, "eform": eform, "guidance": guidance, "temperature": temperature}.items()
        if v is not None
    }
    if kwargs and not generator.startswith("complm"):
        fail(f"--condition/--eform/--guidance/--temperature need a complm generator, not {generator!r}")
    try:
        condition_tokens(condition, eform)
    except ValueError as exc:
        fail(str(exc))

    summary = _with_bar(
        f"pool {pool}",
        generate_pool_flow,
        pool=pool,
        n=n,
        generator=generator,
        seed=seed,
        batch_size=batch_size,
        generator_kwargs=kwargs or None,
        max_batches=max_batches or None,
    )
    console.print(summary)


@app.command(
    "screen-pool",
    epilog=examples(
        "alflow pools screen-pool --pool mine --gap-min 3",
        "alflow pools screen-pool --pool mine --oracle resnet-mp-gap --rescreen",
    ),
)
def screen_pool_cmd(
    pool: str = typer.Option(..., "--pool", help="Pool to screen."),
    oracle: str = typer.Option(DEFAULT_BANDGAP_ORACLE, help=f"Screening model: {ORACLES}."),
    gap_min: float = typer.Option(None, help="Lower end of the predicted-property window (eV); none if unset."),
    gap_max: float = typer.Option(None, help="Upper end of the predicted-property window (eV); none if unset."),
    max_atoms: int = typer.Option(7, min=0, help="Most atoms in the reduced formula (AGD: 7); 0 = no limit."),
    max_elements: int = typer.Option(3, min=0, help="Most distinct elements (AGD: 3); 0 = no limit."),
    predict_all: bool = typer.Option(
        False, "--predict-all", help="Run the model on formulas failing the composition filters too."
    ),
    rescreen: bool = typer.Option(
        False, "--rescreen", help="Delete this setup's verdicts and screen the whole pool again."
    ),
    dask_address: str = typer.Option("", help="Run the batches on this Dask scheduler (tcp://host:8786)."),
    dask_local: bool = typer.Option(False, "--dask-local", help="Run the batches on a local Dask cluster."),
) -> None:
    """Screen a pool: composition filters + model prediction window; verdicts go into 'screenings'
    (one document per member and setup; an interrupted run resumes where it stopped). Band gaps are
    PBE-level DFT estimates."""
    from flows.pipelines.screening import screen_pool_flow

    summary = _with_bar(
        f"screen {pool}",
        screen_pool_flow,
        pool=pool,
        model=oracle,
        gap_min=gap_min,
        gap_max=gap_max,
        max_atoms=max_atoms or None,
        max_elements=max_elements or None,
        predict_all=predict_all,
        rescreen=rescreen,
        dask_address=dask_address or None,
        dask_local=dask_local,
    )
    console.print(summary)


@app.command(
    "top",
    epilog=examples("alflow pools top --pool mine -k 10", "alflow pools top --pool mine --all --csv top.csv"),
)
def top_cmd(
    pool: str = typer.Option(..., "--pool", help="Pool to list."),
    k: int = typer.Option(20, "-k", min=1, help="How many members."),
    all_verdicts: bool = typer.Option(False, "--all", help="Include members that failed screening."),
    key: str = typer.Option("", help="Screening key (see the screen-pool output). Default: the latest screening."),
    csv: Path = typer.Option(None, help="Also write the rows to this CSV file."),
) -> None:
    """The k pool members with the highest predicted property (passing members only by default)."""
    from flows.pipelines.pool import open_store
    from flows.pipelines.screening import top_members

    store = open_store()
    if not store.pool_exists(pool):
        known = store.pool_names()
        fail(f"no pool named {pool!r}; known: {known or 'none'} (alflow pools generate-pool --pool NAME)")
    key = key or store.latest_screen_key(pool) or ""
    rows = top_members(store, pool, k, passed_only=not all_verdicts, key=key or None)
    setup = store.screen_setup(pool, key) if key else None
    title = f"top {k} of pool {pool}"
    if setup:
        title += f" (screening {key}: {setup['model']}, {setup['filters']}; {store.screen_counts(pool, key)})"
    columns = ("formula", "pred_mean", "pred_std", "verdict", "reasons", "batch")
    shown = [
        [
            r["formula"],
            r.get("pred_mean"),
            r.get("pred_std"),
            r.get("verdict"),
            "; ".join(r.get("reasons") or []),
            r.get("batch"),
        ]
        for r in rows
    ]
    console.print(table(title, ("formula", ">pred eV", ">std", "verdict", "reasons", ">batch"), shown))
    console.print("pred: the screening oracle's band gap, a PBE-level DFT estimate.")
    if csv is not None:
        write_csv(csv, [{**r, "key": key} for r in rows], [*columns, "key"])
        console.print(f"wrote {len(rows)} rows to {csv}")


@app.command(
    "agd-recovery",
    epilog=examples(
        "alflow pools agd-recovery deploy/campaigns/agd_exp3.yaml --draws 100000",
        "alflow pools agd-recovery --campaign-seed 1 --json recovery.json",
    ),
)
def agd_recovery_cmd(
    config: str = typer.Argument("deploy/campaigns/agd_exp3.yaml", help="Campaign YAML (run or resumed first)."),
    draws: int = typer.Option(1_000_000, help="Generator samples drawn for the pool."),
    generator: str = typer.Option("matgan", help=f"Pool generator: {GENERATORS}."),
    pool_seed: int = typer.Option(0, help="Seed of the pool draws."),
    threshold: float = typer.Option(6.0, help="Wide-gap threshold (eV)."),
    max_atoms: int = typer.Option(7, help="Most atoms of a pool formula (AGD: 7)."),
    max_elements: int = typer.Option(3, help="Most elements of a pool formula (AGD: 3)."),
    model_seeds: int = typer.Option(3, help="Screening models per arm (seeds 0..N-1)."),
    out_dir: str = typer.Option("runs/agd_recovery", help="Pool cache and the recall plot (PNG)."),
    json_out: str = typer.Option("", "--json", help="Also write the full result here."),
    campaign_seed: int = typer.Option(
        -1, help="Replace the config's seed and run campaign '<name>-s<seed>' (-1: the config as it is)."
    ),
) -> None:
    """The AGD recovery experiment: run/resume the campaign, build and label a generated pool, train
    screening models on seeds / seeds + the loop's acquisitions / seeds + random labels, print recall."""
    import json
    from pathlib import Path

    from flows.pipelines.agd_recovery import RecoverySetup, agd_recovery_flow, plot_recovery

    setup = RecoverySetup(
        draws=draws,
        generator=generator,
        pool_seed=pool_seed,
        threshold=threshold,
        max_atoms=max_atoms,
        max_elements=max_elements,
        model_seeds=tuple(range(model_seeds)),
    )
    result = _with_bar(
        "pool draws",
        agd_recovery_flow,
        unit="draw",
        config_path=config,
        setup=setup,
        out_dir=out_dir,
        campaign_seed=None if campaign_seed < 0 else campaign_seed,
    )
    arm_rows = [
        [
            s["arm"],
            s["labels"],
            s["wide_labels"],
            f"{s['recall']:.1%} ± {s['recall_sd']:.1%}",
            f"{s['precision']:.1%}",
            f"{s['recovered']:.1f}",
            f"{s['predicted']:.1f}",
            s["pool_mae_eV"],
        ]
        for s in result["summary"]
    ]
    cols = ("arm", ">labels", ">wide labels", ">recall", ">precision", ">recovered", ">predicted", ">pool MAE eV")
    title = (
        f"recovery of the oracle's {result['pool']['reference']} wide-gap formulas "
        f"(pool {result['pool']['size']:,}, campaign {result['campaign']})"
    )
    console.print(table(title, cols, arm_rows))
    found = [
        [e["formula"], f"{e['oracle_eV']:.2f}", *(f"{v:.0%}" for v in e["found_by"].values())]
        for e in result["reference"]
    ]
    title = f"the reference formulas: share of each arm's models that also predict them above {threshold} eV"
    console.print(table(title, ("formula", ">oracle eV", *(">" + s["arm"] for s in result["summary"])), found))
    for name, ratio in result["ratios"].items():
        console.print(f"{name}: {ratio:.2f}x")
    png = plot_recovery(result, Path(out_dir) / f"recovery-{result['campaign']}.png")
    console.print(f"plot: {png}")
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=1, default=float))
        console.print(f"-> {json_out}")
