"""``alflow oracles list|predict|train``: the property oracles, with an applicability-domain note."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.autoencoder import weights_target
from flows.cli.common import BAND_GAP_NOTE, ReplaceShipped, Threads, console, err, examples, fail, table, typer_app
from oracles.defaults import DEFAULT_BANDGAP_ORACLE

app = typer_app(
    "Property oracles (band gap, formation energy): list, predict, train.",
    "alflow oracles list",
    "alflow oracles predict MgO LiF Si",
    "alflow oracles train resnet-agd --epochs 1",
)

UNITS = {"band_gap": "eV", "e_form": "eV/atom"}


def _names() -> str:
    from oracles.registry import known_oracles

    return ", ".join(sorted(known_oracles()))


@app.command("list", epilog=examples("alflow oracles list"))
def list_oracles() -> None:
    """List the oracle names (usable in `predict`, `pools screen-pool --oracle` and a campaign's
    `oracle:`), with their shipped weights' held-out MAE."""
    from alcore.paths import WEIGHTS_DIR
    from oracles.registry import ALIASES, BUILT, SHIPPED

    rows = []
    for name, (stem, prop, desc) in SHIPPED.items():
        meta_path = WEIGHTS_DIR / f"{stem}.json"
        mae = "missing"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            m = meta.get("training", {}).get("test_metrics") or meta.get("info", {}).get("test_metrics", {})
            mae = f"{m.get('mae', float('nan')):.3f} {UNITS.get(prop, '')}"
        rows.append([name, prop, mae, desc])
    for name, (options, desc) in BUILT.items():
        rows.append([name, "", "", f"{desc} (options: {options})"])
    for alias, target in ALIASES.items():
        rows.append([alias, "", "", f"alias of {target}"])
    console.print(table(None, ("name", "property", "test MAE", "description"), rows))
    console.print(f"weights in {WEIGHTS_DIR}; " + BAND_GAP_NOTE + ".")


@app.command(
    "predict",
    epilog=examples(
        "alflow oracles predict MgO LiF Si",
        "alflow oracles predict NaCl -o resnet-mp-gap --json",
        "alflow oracles predict MgO --weights-dir ~/.local/share/alflow/weights",
    ),
)
def predict(
    formulas: Annotated[list[str], typer.Argument(help="Formulas to predict, e.g. MgO LiF Si.")],
    oracle: Annotated[
        str, typer.Option("--oracle", "-o", help="Oracle name (see `alflow oracles list`); default: resnet-mp-ext.")
    ] = DEFAULT_BANDGAP_ORACLE,
    weights_dir: Annotated[
        Path | None, typer.Option(help="Load the oracle's weights from this folder (e.g. after `train`).")
    ] = None,
    no_domain: Annotated[bool, typer.Option("--no-domain", help="Skip the applicability-domain check.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Predict a property (mean ± ensemble std) for each FORMULA, with a note where the formula is
    outside the oracle's training domain (unseen element, counts or size beyond the training range,
    composition far from every training formula, or an ensemble spread above the held-out bound).

    Band gaps are PBE-level DFT estimates (the training data are PBE gaps, which underestimate
    experimental gaps); composition-only models cannot tell polymorphs apart. Exits with 2 when no
    formula could be predicted."""
    from alcore.paths import WEIGHTS_DIR
    from flows.oracle_domain import oracle_domain
    from oracles.registry import get_oracle

    o = get_oracle(oracle, weights_dir=weights_dir) if weights_dir else get_oracle(oracle)
    pred = o.predict(formulas)
    unit = UNITS.get(o.property, "")
    domain = None if no_domain else oracle_domain(oracle, o, weights_dir or WEIGHTS_DIR)
    notes = domain.check_many(formulas, pred.std) if domain is not None else [[] for _ in formulas]
    rows = []
    for f, m, s, r, ok, dn in zip(formulas, pred.mean, pred.std, pred.reasons, pred.ok, notes, strict=True):
        rows.append(
            {
                "formula": f,
                "mean": float(m) if ok else None,
                "std": float(s) if ok else None,
                "reason": r,
                "in_domain": None if not ok or domain is None else not dn,
                "domain_notes": dn if ok else [],
            }
        )
    if as_json:
        level = "PBE-level DFT estimate" if o.property == "band_gap" else "DFT (PBE) estimate"
        out = {"oracle": o.name, "property": o.property, "unit": unit, "level": level, "rows": rows}
        console.print_json(json.dumps(out))
    else:
        label = f"band gap {unit}" if o.property == "band_gap" else f"{o.property} {unit}"
        shown = [
            [
                r["formula"],
                r["mean"],
                r["std"],
                r["reason"] or ("outside domain: " + "; ".join(r["domain_notes"]) if r["domain_notes"] else ""),
            ]
            for r in rows
        ]
        console.print(table(f"oracle {o.name}", ("formula", f">{label}", ">std", "note"), shown))
        if o.property == "band_gap":
            console.print(BAND_GAP_NOTE + ".")
    if not any(r["mean"] is not None for r in rows):
        fail(f"none of the {len(rows)} formula(s) could be predicted")


@app.command(
    "train",
    epilog=examples(
        "alflow oracles train resnet-agd --epochs 1   # user data folder",
        "alflow oracles train eform --out-dir /tmp/w",
        "alflow oracles train resnet-agd --replace-shipped",
    ),
)
def train(
    name: Annotated[
        str,
        typer.Argument(help="Recipe: resnet-mp-ext (default), resnet-mp-union, resnet-agd, resnet-mp-gap, eform."),
    ],
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the recipe's seed.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Write the weights here (default: the user data folder).")] = (
        None
    ),
    replace_shipped: ReplaceShipped = False,
    to_store: Annotated[bool, typer.Option("--store", help="Also save the weights to the database (GridFS).")] = False,
    threads: Threads = 1,
    prefect: Annotated[bool, typer.Option("--prefect", help="Run as the Prefect flow 'train-oracle'.")] = False,
) -> None:
    """Retrain oracle recipe NAME and write its weights (safetensors + JSON metadata).

    The shipped weights are only replaced with --replace-shipped; use the new ones with
    `alflow oracles predict --weights-dir DIR`."""
    from alcore.paths import WEIGHTS_DIR
    from flows.pipelines.oracles import train_and_save, train_oracle_flow
    from oracles.training import RECIPES, recipe_runs

    if name not in RECIPES:
        fail(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    target = weights_target(out_dir, replace_shipped, WEIGHTS_DIR, "")
    if prefect:
        meta = train_oracle_flow(name=name, epochs=epochs, seed=seed, out_dir=str(target), threads=threads)
    else:
        store = None
        if to_store:
            from flows.cli.common import open_store

            store = open_store()
        from tqdm import tqdm

        total = sum(e for _, e in recipe_runs(RECIPES[name], epochs))  # a seeded recipe: one run per seed
        bar = tqdm(total=total, desc=f"train {name}", unit="epoch")

        def log(msg: str) -> None:
            if "epoch" in msg:
                bar.update(1)
                bar.set_postfix_str(msg.split(":")[-1].strip())
            else:
                bar.write(msg)

        meta = train_and_save(name, epochs=epochs, seed=seed, out_dir=target, store=store, threads=threads, log=log)
        bar.close()
    m = meta["test_metrics"]
    console.print(
        f"{name}: test MAE {m['mae']:.4f}, RMSE {m['rmse']:.4f}, R2 {m['r2']:.3f} on {m['n']} rows; "
        f"weights {meta.get('weights') or meta.get('sha256')} in {target}"
    )
    if not replace_shipped and out_dir is None:
        err.print(f"the shipped weights are unchanged; use these with --weights-dir {target}", soft_wrap=True)
