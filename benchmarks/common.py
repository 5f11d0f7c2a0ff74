"""Shared helpers for benchmark scripts: timing, a printed table, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Median wall time (s) of ``repeats`` calls of ``fn`` and the last return value."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def machine() -> dict[str, Any]:
    """What the numbers were measured on (cores, load average, Python)."""
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def report(name: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    """Print ``rows`` as an aligned table and write them (plus machine info) to results/<name>.json."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = {c: max(len(c), *(len(_s(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(fmt[c]) for c in cols))
    for r in rows:
        print("  ".join(_s(r.get(c)).ljust(fmt[c]) for c in cols))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"rows": rows, "machine": machine(), **(extra or {})}, indent=1, default=str))
    print(f"-> {path}")
    return path


def _s(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
