"""One exception hierarchy for the whole project.

Every message says what was wrong and what to do about it; the CLI prints the message (no stack
trace) for any :class:`AlflowError`.
"""

from __future__ import annotations


class AlflowError(Exception):
    """Base class of every error a user can cause and fix."""


class InvalidFormulaError(AlflowError, ValueError):
    """A formula cannot be parsed or represented (unknown element, count too large, ...)."""

    def __init__(self, formula: object, reason: str) -> None:
        self.formula = formula
        self.reason = reason
        super().__init__(f"invalid formula {formula!r}: {reason}")


class InvalidLabelError(AlflowError, ValueError):
    """A property value is NaN, infinite, negative where it cannot be, or conflicting."""


class ImportValidationError(AlflowError, ValueError):
    """A CSV import had bad rows; ``problems`` lists ``(line_number, message)``."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        shown = "; ".join(f"line {n}: {m}" for n, m in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(
            f"{path}: {len(problems)} bad row(s), nothing was written: {shown}{more}. "
            "Fix the rows or pass --skip-bad to import only the good ones."
        )


class ConfigError(AlflowError, ValueError):
    """A campaign config or setting is invalid (unknown oracle, bad bounds, conflicting config)."""


class CampaignLockedError(AlflowError, RuntimeError):
    """Another runner holds the campaign lease."""


class CampaignNotFoundError(AlflowError, LookupError):
    """No campaign of that name exists in the store."""


class CorruptModelError(AlflowError, RuntimeError):
    """A stored model blob does not match its sha256, is of the wrong kind, or cannot be loaded safely."""


class EmptyPoolError(AlflowError, ValueError):
    """A pool or candidate set that must have members has none."""


class AcquisitionError(AlflowError, RuntimeError):
    """No valid candidate could be decoded within the attempt budget."""


class StoreUnavailableError(AlflowError, ConnectionError):
    """The MongoDB server could not be reached within the configured time."""


class StructureError(AlflowError, ValueError):
    """A crystal structure is unusable (overlapping atoms, diverging relaxation, no template)."""


class LeakError(AlflowError, AssertionError):
    """A table that must hold only visible formulas of a hold-out split contains hidden ones."""
