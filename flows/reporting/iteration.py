"""Campaign reports: PNG plots (matplotlib, Agg) and Prefect UI artifacts, read from the Store.

:func:`publish_iteration` is the entry point the campaign's ``metrics`` stage calls: it writes
``discovery.png`` (best value and hits vs labels), ``parity.png`` (screening model on the
validation set), ``latent.png`` (2-D PCA of the autoencoder latents, coloured by value) under
``out_dir`` and, only inside a Prefect flow/task run, publishes table, markdown and image artifacts
(top candidates, structures with E_form/E_hull and CIF paths). Outside a run it only writes files,
so ``alflow report NAME --out DIR`` works without a Prefect server.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow

from flows.cif_export import write_cif
from flows.store import Store

log = logging.getLogger(__name__)

#: Images larger than this (bytes) are not inlined as data: URLs in image artifacts.
MAX_INLINE_IMAGE_BYTES = 400_000
PLOT_DPI = 100


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (safe in workers without a display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _config(store: Store, name: str) -> dict[str, Any]:
    return store.get_campaign(name)["config"]


# ---------------------------------------------------------------------------- data extraction
def discovery_series(store: Store, name: str) -> dict[str, np.ndarray]:
    """Discovery curve of campaign ``name``: arrays (one entry per point) ``n_labels``,
    ``best_value`` (eV, seeds included), ``best_acquired`` (eV, the loop's own labels; NaN before any),
    ``count_above_threshold`` and ``iteration``; point 0 is the seed set
    (computed from the seed labels), then one point per iteration with stored ``metrics``."""
    cfg = _config(store, name)
    threshold = float(cfg.get("target", {}).get("threshold", 3.0))
    prop = cfg.get("property", "band_gap")
    seeds = np.array([d["value"] for d in store.labels(name, prop) if d.get("source") == "seed"], dtype=np.float64)
    rows: list[tuple[int, int, float, int, float]] = []
    if len(seeds):
        rows.append((0, len(seeds), float(seeds.max()), int((seeds >= threshold).sum()), np.nan))
    for it in store.iterations(name):
        m = it.get("metrics")
        if m and it["iteration"] > 0:
            rows.append(
                (
                    int(it["iteration"]),
                    int(m["n_labels"]),
                    float(m["best_value"]) if m.get("best_value") is not None else np.nan,
                    int(m.get("count_above_threshold", 0)),
                    float(m["best_acquired"]) if m.get("best_acquired") is not None else np.nan,
                )
            )
    arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return {
        "iteration": arr[:, 0].astype(int),
        "n_labels": arr[:, 1].astype(int),
        "best_value": arr[:, 2],
        "count_above_threshold": arr[:, 3].astype(int),
        "best_acquired": arr[:, 4],
        "threshold": np.array(threshold),
    }


def screening_parity(store: Store, name: str, iteration: int | None = None) -> dict[str, Any] | None:
    """Validation-set predictions of the screening model of ``iteration`` (latest with one if None).

    Returns ``{"formula", "true", "pred", "std"}`` (arrays, eV; only finite predictions),
    ``iteration``, ``mae`` and ``dataset``; None if no iteration has a screening model yet.
    """
    from flows.datasets import band_gap_table
    from oracles.registry import load_screening_model

    docs = [
        it
        for it in store.iterations(name)
        if it.get("screening_sha") and (iteration is None or it["iteration"] <= iteration)
    ]
    if not docs:
        return None
    it = docs[-1]
    state, meta = store.load_model(it["screening_sha"], kind="screening")
    model = load_screening_model(state, meta)
    dataset = _config(store, name).get("validation", "agd_test_500")
    val = band_gap_table(dataset)
    pred = model.predict(list(val["formula"]))
    ok = pred.ok
    true = val["value"].to_numpy(dtype=np.float64)[ok]
    return {
        "formula": np.asarray(val["formula"])[ok],
        "true": true,
        "pred": pred.mean[ok],
        "std": pred.std[ok],
        "iteration": int(it["iteration"]),
        "mae": float(np.mean(np.abs(pred.mean[ok] - true))) if ok.any() else float("nan"),
        "dataset": dataset,
    }


def latent_points(store: Store, name: str) -> dict[str, Any]:
    """Latents of the labelled formulas (encoded with the campaign's autoencoder) and of every stored
    candidate (their ``latent`` field), projected on the 2 principal axes of all of them.

    Returns ``labelled_xy`` (N, 2), ``labelled_value`` (N,) eV, ``labelled_source`` (N,),
    ``cand_xy`` (M, 2), ``cand_status`` (M,), ``cand_formula`` (M,), ``explained`` (2,) variance
    fractions.
    """
    from alcore.autoencoder import encode_formulas
    from flows.campaign import CampaignContext
    from flows.config import parse_config

    config = parse_config(_config(store, name), source=f"campaign {name}")
    ctx = CampaignContext(store, config, owner="reporting")
    model, _ = ctx.autoencoder
    labels = store.labels(name, config.property)
    formulas = [d["formula"] for d in labels]
    z_lab = encode_formulas(model, ctx.encoder, formulas) if formulas else np.empty((0, 0))
    cands = [c for c in store.candidates(name) if c.get("latent")]
    z_c = np.array([c["latent"] for c in cands], dtype=np.float64)
    blocks = [b for b in (z_lab, z_c) if b.size]
    if not blocks:
        return {
            "labelled_xy": np.empty((0, 2)),
            "labelled_value": np.empty(0),
            "labelled_source": [],
            "cand_xy": np.empty((0, 2)),
            "cand_status": [],
            "cand_formula": [],
            "explained": np.zeros(2),
        }
    z = np.vstack(blocks)
    centre = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - centre, full_matrices=False)
    axes = vt[:2].T  # (d, 2)
    var = s**2
    explained = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)

    def project(a: np.ndarray) -> np.ndarray:
        return (a - centre) @ axes if a.size else np.empty((0, 2))

    return {
        "labelled_xy": project(z_lab),
        "labelled_value": np.array([d["value"] for d in labels]),
        "labelled_source": [d.get("source") for d in labels],
        "cand_xy": project(z_c),
        "cand_status": [c.get("status") for c in cands],
        "cand_formula": [c["formula"] for c in cands],
        "explained": explained,
    }


def top_candidates(store: Store, name: str, iteration: int | None = None, k: int = 20) -> list[dict[str, Any]]:
    """Rows for the candidates table: formula, iteration, status, label (eV or None), GP mean and std (eV),
    validity (``valid`` + reasons joined) and novelty; labelled first by label, then by GP mean."""
    cfg = _config(store, name)
    labels = {d["formula"]: d for d in store.labels(name, cfg.get("property", "band_gap"))}
    rows = []
    for c in store.candidates(name, iteration):
        lab = labels.get(c["formula"])
        rows.append(
            {
                "iteration": c["iteration"],
                "formula": c["formula"],
                "status": c.get("status"),
                "label_eV": None if lab is None or lab.get("source") == "seed" else round(float(lab["value"]), 3),
                "gp_mean_eV": _r(c.get("gp_mean")),
                "gp_std_eV": _r(c.get("gp_std")),
                "valid": bool(c.get("valid")),
                "reasons": "; ".join(c.get("reasons") or []) or "none",
                "novel": bool(c.get("novel")),
                "label_source": None if lab is None else lab.get("source"),
            }
        )
    rows.sort(key=lambda r: (r["label_eV"] is None, -(r["label_eV"] or 0.0), -(r["gp_mean_eV"] or 0.0)))
    return rows[:k]


def structure_rows(store: Store, name: str, cif_dir: Path | None = None, k: int = 50) -> list[dict[str, Any]]:
    """Rows for the structures table (formula, template, E_form eV/atom, E_hull eV/atom, verdict,
    reason, CIF path); with ``cif_dir`` the CIFs are written there and their paths listed."""
    rows = []
    for d in store.structures_of(name, by_e_hull=True, limit=k):
        path = None
        if cif_dir is not None and d.get("cif"):
            path = write_cif(d, cif_dir)
        rows.append(
            {
                "formula": d["formula"],
                "template_id": str(d.get("template_id")),
                "e_form_eV_atom": _r(d.get("e_form")),
                "e_hull_eV_atom": _r(d.get("e_hull")),
                "verdict": d.get("verdict"),
                "reason": d.get("reason") or "none",
                "cif": str(path) if path else "none",
            }
        )
    return rows


def _r(v: Any, digits: int = 3) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


# ---------------------------------------------------------------------------- plots
def plot_discovery(store: Store, name: str, path: Path) -> Path:
    """Discovery curve PNG: best label (eV, left axis) and count above the target threshold (right
    axis) vs number of labels. Returns ``path``."""
    plt = _pyplot()
    s = discovery_series(store, name)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=PLOT_DPI)
    ax.plot(s["n_labels"], s["best_value"], "o-", color="tab:blue", label="best overall (seeds included)")
    acq = np.isfinite(s["best_acquired"])
    if acq.any():
        ax.plot(s["n_labels"][acq], s["best_acquired"][acq], "^--", color="tab:green", label="best acquired")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("number of labels")
    ax.set_ylabel("best band gap (eV, PBE-level DFT estimate)", color="tab:blue", fontsize=8)
    ax2 = ax.twinx()
    ax2.step(
        s["n_labels"],
        s["count_above_threshold"],
        where="post",
        color="tab:red",
        label=f"count >= {float(s['threshold']):g} eV",
    )
    ax2.plot(s["n_labels"], s["count_above_threshold"], "s", color="tab:red", ms=4)
    ax2.set_ylabel(f"labels >= {float(s['threshold']):g} eV", color="tab:red")
    for n, i in zip(s["n_labels"], s["iteration"], strict=True):
        ax.annotate(str(i), (n, ax.get_ylim()[0]), fontsize=7, ha="center", va="bottom", color="0.4")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"campaign {name}: discovery (point labels = iteration)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Lay out, write and close a matplotlib figure; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def plot_parity(store: Store, name: str, path: Path, iteration: int | None = None) -> Path | None:
    """Parity PNG of the screening model on the validation set (true vs predicted eV, MAE in the
    title); None (nothing written) if the campaign has no screening model yet."""
    data = screening_parity(store, name, iteration)
    if data is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=PLOT_DPI)
    ax.scatter(data["true"], data["pred"], s=8, alpha=0.6, c="tab:purple", edgecolors="none")
    hi = float(max(data["true"].max(initial=1.0), data["pred"].max(initial=1.0))) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=1)
    ax.set_xlim(0, hi)
    ax.set_ylim(min(0.0, float(data["pred"].min(initial=0.0))), hi)
    ax.set_xlabel(f"band gap (eV, PBE-level DFT), {data['dataset']}")
    ax.set_ylabel("screening model (eV, PBE-level estimate)")
    ax.set_title(f"{name} iteration {data['iteration']}: MAE {data['mae']:.3f} eV (n={len(data['true'])})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_latent(store: Store, name: str, path: Path) -> Path:
    """2-D PCA latent map PNG: labelled formulas coloured by value (eV), acquired candidates circled,
    rejected decodes as crosses. Returns ``path``."""
    plt = _pyplot()
    p = latent_points(store, name)
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=PLOT_DPI)
    if len(p["labelled_xy"]):
        sc = ax.scatter(
            p["labelled_xy"][:, 0],
            p["labelled_xy"][:, 1],
            c=p["labelled_value"],
            cmap="viridis",
            s=14,
            alpha=0.85,
            edgecolors="none",
        )
        fig.colorbar(sc, ax=ax, label="band gap (eV, PBE-level DFT estimate)")
    status = np.array(p["cand_status"], dtype=object)
    if len(p["cand_xy"]):
        bad = status == "rejected"
        ax.scatter(
            p["cand_xy"][~bad, 0],
            p["cand_xy"][~bad, 1],
            s=60,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=1.2,
            label="acquired candidates",
        )
        if bad.any():
            ax.scatter(p["cand_xy"][bad, 0], p["cand_xy"][bad, 1], s=25, marker="x", c="0.5", label="rejected decodes")
        ax.legend(loc="best", fontsize=8)
    ex = p["explained"]
    ax.set_xlabel(f"PC1 ({ex[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ex[1]:.0%} of variance)")
    ax.set_title(f"campaign {name}: autoencoder latent space (PCA)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def write_plots(store: Store, name: str, out_dir: str | Path, iteration: int | None = None) -> list[Path]:
    """Write ``discovery.png``, ``parity.png`` (if a screening model exists) and ``latent.png`` for
    campaign ``name`` under ``out_dir`` (created); returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_discovery(store, name, out / "discovery.png"),
        plot_parity(store, name, out / "parity.png", iteration),
        plot_latent(store, name, out / "latent.png"),
    ]
    return [p for p in paths if p is not None]


# ---------------------------------------------------------------------------- Prefect artifacts
def in_run_context() -> bool:
    """True inside a Prefect flow or task run (where artifacts attach to the run)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def artifact_key(*parts: Any) -> str:
    """A valid Prefect artifact key (lowercase letters, digits, dashes) from ``parts``."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(str(p) for p in parts).lower())).strip("-")


def image_url(path: Path) -> str:
    """A URL the Prefect UI can show for a PNG: an inline ``data:`` URL when small enough (the UI
    cannot reach the worker's disk), else a ``file://`` URL."""
    data = path.read_bytes()
    if len(data) <= MAX_INLINE_IMAGE_BYTES:
        return "data:image/png;base64," + base64.b64encode(data).decode()
    return path.resolve().as_uri()


def publish_artifacts(store: Store, name: str, iteration: int, pngs: list[Path], out_dir: Path) -> list[str]:
    """Create the Prefect artifacts of one iteration (must run inside a flow/task run); returns the
    artifact keys: candidates table, structures table (if any), summary markdown, one image per PNG."""
    from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

    keys = []
    rows = top_candidates(store, name, iteration)
    key = artifact_key(name, "candidates")
    create_table_artifact(
        rows,
        key=key,
        description=f"campaign {name} iteration {iteration}: candidates (label, GP mean ± std, validity, novelty)",
    )
    keys.append(key)
    structs = structure_rows(store, name, out_dir / "cifs")
    if structs:
        key = artifact_key(name, "structures")
        create_table_artifact(structs, key=key, description=f"campaign {name}: structures (E_form, E_hull, CIF)")
        keys.append(key)
    for p in pngs:
        key = artifact_key(name, p.stem)
        create_image_artifact(image_url(p), key=key, description=f"campaign {name} iteration {iteration}: {p.name}")
        keys.append(key)
    s = discovery_series(store, name)
    lines = [
        f"# Campaign `{name}`, iteration {iteration}",
        "",
        "| iteration | labels | best (eV) | best acquired (eV) | count >= threshold |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {i} | {n} | {b:.3f} | {'-' if not np.isfinite(a) else f'{a:.3f}'} | {c} |"
        for i, n, b, a, c in zip(
            s["iteration"], s["n_labels"], s["best_value"], s["best_acquired"], s["count_above_threshold"], strict=True
        )
    ]
    lines += ["", "Band gaps are PBE-level DFT estimates; best (eV) includes the seed labels."]
    lines += ["", "Plots (written by the worker; also shown as image artifacts):", ""]
    lines += [f"* `{p.resolve()}`" for p in pngs]
    key = artifact_key(name, "summary")
    create_markdown_artifact("\n".join(lines), key=key, description=f"campaign {name} discovery summary")
    keys.append(key)
    return keys


def publish_iteration(store: Store, campaign_name: str, iteration: int, out_dir: str | Path) -> list[Path]:
    """Write the plots of ``campaign_name`` up to ``iteration`` into ``out_dir`` and, inside a Prefect
    run, publish the artifacts. Returns the PNG paths. Safe to call outside a flow run (files only)."""
    out = Path(out_dir)
    pngs = write_plots(store, campaign_name, out, iteration)
    if in_run_context():
        publish_artifacts(store, campaign_name, iteration, pngs, out)
    return pngs


@flow(name="campaign-report", log_prints=True)
def campaign_report_flow(campaign_name: str, out_dir: str = "runs/reports", iteration: int | None = None) -> list[str]:
    """Prefect flow: plots and artifacts of a campaign (latest iteration if ``iteration`` is None).

    Connects with ``Store.connect()`` (``ALFLOW_MONGODB_URI`` or the embedded server); returns the
    PNG paths written under ``out_dir/<campaign>``.
    """
    store = Store.connect()
    try:
        it = iteration if iteration is not None else int(store.get_campaign(campaign_name).get("iteration", 0))
        return [str(p) for p in publish_iteration(store, campaign_name, it, Path(out_dir) / campaign_name)]
    finally:
        store.close()
