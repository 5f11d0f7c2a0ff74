"""Where the project's committed data and weights live (inside the project, never ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root (the project is installed editable; data ships in the checkout).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Committed data sets (see data/README.md for provenance and licences).
DATA_DIR = Path(os.environ.get("ALFLOW_PROJECT_DATA", PROJECT_ROOT / "data"))

#: Committed trained weights: ``<name>.safetensors`` plus ``<name>.json`` metadata.
WEIGHTS_DIR = DATA_DIR / "weights"


def data_file(*parts: str) -> Path:
    """Path of a committed data file, e.g. ``data_file("bandgap", "agd_exp1_42k.csv")``.

    Raises ``FileNotFoundError`` with a hint if it is missing (a broken checkout).
    """
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the project (git checkout it again)")
    return path
