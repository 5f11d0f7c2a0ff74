"""Import labels from a CSV file, validated row by row; nothing partial is written unless asked."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alcore.composition import InvalidFormulaError, canonical_formula
from alcore.errors import AlflowError, ImportValidationError

FORMULA_COLUMNS = ("formula", "composition")
VALUE_COLUMNS = ("value", "band_gap", "eg", "target")


class LabelFileError(ImportValidationError):
    """The file as a whole cannot be imported (missing, too large, empty, no usable header):
    ``--skip-bad`` cannot help, so the message does not suggest it."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        shown = "; ".join(f"line {n}: {m}" if n else m for n, m in problems)
        AlflowError.__init__(self, f"{path}: {shown}; nothing was written")


@dataclass
class ParsedLabels:
    """Valid records ``{formula, value, std?, line}`` (``line``: the CSV line, counted from 1 = the
    header) and problems ``(line_number, message)``."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)


def _pick(header: list[str], names: Iterable[str]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def parse_label_csv(path: Path, max_bytes: int, allow_negative: bool = False) -> ParsedLabels:
    """Read and validate a label CSV: header with a formula column (``formula``/``composition``) and a
    value column (``value``/``band_gap``/``Eg``/``target``), optional ``std``.

    Checks every row: parseable formula, finite number, non-negative (band gaps), and no formula
    given twice with different values (rows that agree are merged). Raises
    :class:`ImportValidationError` for a file-level problem (missing, too large, empty, no header,
    missing columns). Returns :class:`ParsedLabels` with line numbers counted from 1 (the header).
    """
    if not path.exists():
        raise LabelFileError(str(path), [(0, "file not found")])
    if path.is_dir():
        raise LabelFileError(str(path), [(0, "is a folder, not a CSV file")])
    size = path.stat().st_size
    if size > max_bytes:
        raise LabelFileError(
            str(path),
            [
                (
                    0,
                    f"file is {size:,} bytes, above the import limit of "
                    f"{max_bytes:,} (ALFLOW_MAX_IMPORT_BYTES); split it",
                )
            ],
        )
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        raise LabelFileError(str(path), [(0, "file is empty; expected a header such as 'formula,value'")])
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    fcol, vcol = _pick(header, FORMULA_COLUMNS), _pick(header, VALUE_COLUMNS)
    if fcol is None or vcol is None:
        missing = []
        if fcol is None:
            missing.append(f"a formula column ({'/'.join(FORMULA_COLUMNS)})")
        if vcol is None:
            missing.append(f"a value column ({'/'.join(VALUE_COLUMNS)})")
        raise LabelFileError(str(path), [(1, f"header {header} lacks {' and '.join(missing)}")])
    fi, vi = header.index(fcol), header.index(vcol)
    si = header.index(_pick(header, ("std",))) if _pick(header, ("std",)) else None
    out = ParsedLabels()
    seen: dict[str, tuple[float, int]] = {}
    conflicted: set[str] = set()
    for line, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(header):
            out.problems.append((line, f"expected {len(header)} columns, got {len(row)}"))
            continue
        if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
            out.problems.append(
                (
                    line,
                    f"expected {len(header)} columns, got {len(row)}: the cell(s) beyond the header "
                    f"{header} would be lost; name them in the header (e.g. 'std') or remove them",
                )
            )
            continue
        raw_formula, raw_value = row[fi].strip(), row[vi].strip()
        try:
            formula = canonical_formula(raw_formula)
        except InvalidFormulaError as exc:
            out.problems.append((line, f"formula {raw_formula!r}: {exc.reason}"))
            continue
        try:
            value = float(raw_value)
        except ValueError:
            out.problems.append((line, f"value {raw_value!r} for {raw_formula} is not a number"))
            continue
        if not math.isfinite(value):
            out.problems.append((line, f"value for {raw_formula} is {raw_value}; labels must be finite"))
            continue
        if value < 0 and not allow_negative:
            out.problems.append((line, f"band gap {value} for {raw_formula} is negative"))
            continue
        if formula in seen:
            prev, prev_line = seen[formula]
            if not math.isclose(prev, value, abs_tol=1e-9):
                out.problems.append((line, f"{formula} was given {prev} on line {prev_line} and {value} here"))
                conflicted.add(formula)
            continue
        seen[formula] = (value, line)
        record: dict[str, Any] = {"formula": formula, "value": value, "line": line}
        if si is not None and row[si].strip():
            try:
                record["std"] = float(row[si])
            except ValueError:
                out.problems.append((line, f"std {row[si]!r} is not a number"))
                continue
        out.records.append(record)
    out.records = [r for r in out.records if r["formula"] not in conflicted]
    if not out.records and not out.problems:
        out.problems.append((1, "no data rows after the header"))
    return out
