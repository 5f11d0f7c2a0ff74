"""``alflow oracles ...``: list, use and retrain the property oracles."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from alcore.errors import AlflowError

app = typer.Typer(help="Property oracles (band gap, formation energy): list, predict, train.", no_args_is_help=True)
console = Console()


def _fail(exc: AlflowError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


@app.command("list")
def list_oracles() -> None:
    """List the oracle names get_oracle() accepts, with their shipped weights' test metrics."""
    from alcore.paths import WEIGHTS_DIR
    from oracles.registry import ALIASES, SHIPPED

    table = Table("name", "property", "weights", "test MAE", "description")
    for name, (stem, prop, desc) in SHIPPED.items():
        meta_path = WEIGHTS_DIR / f"{stem}.json"
        mae = "missing"
        if meta_path.exists():
            m = json.loads(meta_path.read_text()).get("training", {}).get("test_metrics", {})
            mae = f"{m.get('mae', float('nan')):.4f}"
        table.add_row(name, prop, stem, mae, desc)
    for alias, target in ALIASES.items():
        table.add_row(alias, "", "", "", f"alias of {target}")
    console.print(table)


@app.command()
def predict(
    formulas: list[str] = typer.Argument(..., help="Formulas to predict, e.g. MgO LiF Si"),
    oracle: str = typer.Option("resnet-agd", "--oracle", "-o", help="Oracle name (see `list`)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Predict a property (mean +- ensemble std) for each FORMULA."""
    from oracles.registry import get_oracle

    try:
        o = get_oracle(oracle)
    except AlflowError as exc:
        _fail(exc)
        return
    pred = o.predict(formulas)
    unit = "eV" if o.property == "band_gap" else "eV/atom"
    rows = [
        {"formula": f, "mean": None if not ok else float(m), "std": None if not ok else float(s), "reason": r}
        for f, m, s, r, ok in zip(formulas, pred.mean, pred.std, pred.reasons, pred.ok, strict=True)
    ]
    if as_json:
        console.print_json(json.dumps({"oracle": o.name, "property": o.property, "unit": unit, "rows": rows}))
        return
    table = Table("formula", f"{o.property} ({unit})", "std", "note", title=f"oracle {o.name}")
    for r in rows:
        if r["mean"] is None:
            table.add_row(r["formula"], "-", "-", r["reason"] or "")
        else:
            table.add_row(r["formula"], f"{r['mean']:.3f}", f"{r['std']:.3f}", "")
    console.print(table)


@app.command()
def train(
    name: str = typer.Argument(..., help="Recipe: resnet-agd, resnet-mp-gap, eform or resnet-mp-union"),
    epochs: int = typer.Option(None, help="Override the recipe's epochs"),
    seed: int = typer.Option(None, help="Override the recipe's seed"),
    out_dir: str = typer.Option(None, help="Write weights here (default: data/weights)"),
    to_store: bool = typer.Option(False, "--store", help="Also save the weights to the MongoDB store (GridFS)"),
    threads: int = typer.Option(1, help="torch threads"),
    prefect: bool = typer.Option(False, "--prefect/--no-prefect", help="Run as the Prefect flow 'train-oracle'"),
) -> None:
    """Retrain oracle recipe NAME and write its weights (safetensors + JSON metadata)."""
    from alcore.paths import WEIGHTS_DIR
    from flows.pipelines.oracles import train_and_save, train_oracle_flow
    from oracles.training import RECIPES

    if name not in RECIPES:
        _fail(AlflowError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}"))
    target = out_dir or str(WEIGHTS_DIR)
    try:
        if prefect:
            meta = train_oracle_flow(name=name, epochs=epochs, seed=seed, out_dir=target, threads=threads)
        else:
            store = None
            if to_store:
                from flows.store import Store

                store = Store.connect()
            from tqdm import tqdm

            bar = tqdm(total=epochs or RECIPES[name].config.epochs, desc=f"train {name}", unit="epoch")

            def log(msg: str) -> None:
                if "epoch" in msg:
                    bar.update(1)
                    bar.set_postfix_str(msg.split(":")[-1].strip())
                else:
                    bar.write(msg)

            meta = train_and_save(name, epochs=epochs, seed=seed, out_dir=target, store=store, threads=threads, log=log)
            bar.close()
    except AlflowError as exc:
        _fail(exc)
        return
    m = meta["test_metrics"]
    console.print(
        f"{name}: test MAE {m['mae']:.4f}, RMSE {m['rmse']:.4f}, R2 {m['r2']:.3f} on {m['n']} rows; "
        f"weights {meta.get('weights') or meta.get('sha256')}"
    )


if __name__ == "__main__":
    app()
