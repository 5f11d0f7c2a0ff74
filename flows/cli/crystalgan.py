"""``alflow crystalgan ...``: train CrystalGAN, generate ternary hydrides, run the Table II comparison, export.

Domains: ``PdH``/``NiH`` (bundled .mat files), any CrystalGAN-style ``.mat`` file, or a folder of
binary M-H POSCAR files (one metal per folder).
"""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from flows.cli.common import ReplaceShipped, examples, fail, typer_app

app = typer_app(
    "CrystalGAN: ternary A-H-B hydride structures from binary AH and BH (Nouira et al. 2018).",
    "alflow crystalgan generate --no-store",
    "alflow crystalgan export --out hydrides --format cif",
    "alflow crystalgan train --epochs1 50 --epochs2 50 --out /tmp/cg",
)


def _bar_progress():  # type: ignore[no-untyped-def]
    bars: dict[str, tqdm] = {}

    def cb(label: str, i: int, n: int) -> None:
        if label not in bars:
            bars[label] = tqdm(total=n, desc=label, leave=False)
        bars[label].update(1)
        if i == n:
            bars.pop(label).close()

    return cb


@app.command(
    epilog=examples(
        "alflow crystalgan train --epochs1 50 --epochs2 50      # user data folder",
        "alflow crystalgan train --out /tmp/cg",
        "alflow crystalgan train --replace-shipped             # data/weights",
    )
)
def train(
    domain_a: str = typer.Option("PdH", help="first binary domain AH: PdH, NiH, a .mat file or a POSCAR folder"),
    domain_b: str = typer.Option("NiH", help="second binary domain BH"),
    epochs1: int = typer.Option(1000, help="step-1 epochs (paper: 1000)"),
    epochs2: int = typer.Option(1000, help="step-2 epochs (paper: 1000)"),
    seed: int = typer.Option(0, help="random seed"),
    geo: bool = typer.Option(True, "--geo/--no-geo", help="use the geometric loss in step 2"),
    div: float = typer.Option(
        None, help="diversity-sensitive loss weight in step 2 (default: the product's 3; 0: the paper's loss)"
    ),
    noise_dim: int = typer.Option(None, help="noise injection into the step-2 generators (default: 0, none)"),
    select_every: int = typer.Option(
        None, min=0, help="keep the step-2 snapshot with most distinct good ones, scored every N epochs (default 50)"
    ),
    out: Path = typer.Option(
        None, help="weights stem (default: crystalgan_<A>-<B> in the user data folder)", show_default=False
    ),
    replace_shipped: ReplaceShipped = False,
) -> None:
    """Train CrystalGAN (step 1, feature transfer, step 2) and write safetensors + JSON metadata.

    The shipped weights are only replaced with --replace-shipped; use new ones with
    `alflow crystalgan generate --weights STEM`."""
    from flows.cli.autoencoder import weights_target
    from flows.pipelines.crystalgan import default_stem, product_config
    from generators.crystalgan.compare import evaluate
    from generators.crystalgan.train import generate, save_weights, train_step1, train_step2

    shipped = default_stem(domain_a, domain_b)
    stem = weights_target(out, replace_shipped, shipped, shipped.name)
    cfg = product_config(domain_a=domain_a, domain_b=domain_b, epochs1=epochs1, epochs2=epochs2, seed=seed, use_geo=geo)
    import torch

    torch.set_num_threads(1)
    prog = _bar_progress()
    model = train_step2(train_step1(cfg, prog), geo, prog, div=div, noise_dim=noise_dim, select_every=select_every)
    ev = evaluate(generate(model)[0], model.metal_a, model.metal_b, cfg.d1, cfg.d2, cfg.slots)
    metrics = {k: ev[k] for k in ("n", "decoded", "ternary", "good", "good_distinct")}
    path = save_weights(model, stem, metrics)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); {metrics}; wall {model.wall_s}")


@app.command(epilog=examples("alflow crystalgan generate --no-store", "alflow crystalgan generate --seed 1 --chgnet"))
def generate(
    weights: Path = typer.Option(None, help="weights stem (default data/weights/crystalgan_PdH-NiH)"),
    seeds: list[int] = typer.Option(None, "--seed", help="feature-transfer pairing seed(s); default: training set"),
    store: bool = typer.Option(True, "--store/--no-store", help="upsert accepted structures into the database"),
    chgnet: bool = typer.Option(False, "--chgnet", help="add CHGNet single-point energies per atom (unrelaxed)"),
) -> None:
    """Generate ternary structures from committed weights; print the accepted ones and store them."""
    from flows.pipelines.crystalgan import (
        add_chgnet_energies,
        campaign_name,
        default_stem,
        structure_documents,
        weights_sha,
    )
    from generators.crystalgan.train import load_weights

    stem = weights or default_stem()
    model = load_weights(stem)
    docs = structure_documents(model, list(seeds) if seeds else [None], weights_sha256=weights_sha(stem))
    if chgnet and docs:
        add_chgnet_energies(docs)
    for d in docs:
        m = d["metrics"]
        e = m.get("chgnet_e_per_atom")
        typer.echo(
            f"{d['template_id']:>20}  {d['formula']:<12} metal-metal NN {m['min_metal_nn']:.2f}-"
            f"{m['max_metal_nn']:.2f} Å" + (f"  CHGNet {e:.3f} eV/atom" if e is not None else "")
        )
    written = 0
    if store and docs:
        from flows.store import Store

        s = Store.connect()
        try:
            written = s.upsert_structures(docs)
        finally:
            s.close()
    typer.echo(
        f"{len(docs)} accepted; {written} written to structures (campaign "
        f"{campaign_name(model.metal_a, model.metal_b)})"
    )


@app.command(epilog=examples("alflow crystalgan compare --epochs1 100 --epochs2 100 --seed 0"))
def compare(
    epochs1: int = typer.Option(1000, help="step-1 epochs"),
    epochs2: int = typer.Option(1000, help="step-2 epochs"),
    seeds: list[int] = typer.Option([0, 1, 2], "--seed", help="seeds (repeat the option)"),
    json_out: Path = typer.Option(None, "--json", help="write the full result as JSON"),
) -> None:
    """Table II: standard GAN, DiscoGAN, CrystalGAN without/with constraints (good Pd-Ni-H structures)."""
    from generators.crystalgan.compare import format_table, run_comparison, write_json

    res = run_comparison(epochs1, epochs2, seeds, show=True)
    typer.echo(format_table(res["summary"]))
    if json_out:
        write_json(res, json_out)
        typer.echo(f"wrote {json_out}")


@app.command(
    epilog=examples("alflow crystalgan export --out hydrides", "alflow crystalgan export --out h --format cif")
)
def export(
    fmt: str = typer.Option("poscar", "--format", help="poscar or cif"),
    out: Path = typer.Option(..., help="output folder"),
    weights: Path = typer.Option(None, help="weights stem (default data/weights/crystalgan_PdH-NiH)"),
    seeds: list[int] = typer.Option(None, "--seed", help="pairing seed(s); default: training transfer set"),
    include_rejected: bool = typer.Option(
        False, "--include-rejected", help="also write structures that fail the distance check"
    ),
) -> None:
    """Write generated structures as POSCAR or CIF files named <template_id>_<formula>.<ext>."""
    from flows.pipelines.crystalgan import default_stem, structure_documents
    from generators.crystalgan.train import load_weights

    if fmt not in ("poscar", "cif"):
        fail(f"--format must be poscar or cif, got {fmt!r}")
    model = load_weights(weights or default_stem())
    docs = structure_documents(model, list(seeds) if seeds else [None], accepted_only=not include_rejected)
    out.mkdir(parents=True, exist_ok=True)
    for d in docs:
        ext = "vasp" if fmt == "poscar" else "cif"
        (out / f"{d['template_id']}_{d['formula']}.{ext}").write_text(d["poscar"] if fmt == "poscar" else d["cif"])
    typer.echo(f"wrote {len(docs)} {fmt} files to {out}")
