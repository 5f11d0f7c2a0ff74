"""The one logging path of the flows: :func:`flow_logger`.

Inside a Prefect flow or task run it is Prefect's run logger (messages reach the Prefect UI);
outside one (the CLI, scripts, tests) it is the stdlib logger ``alflow``. Library code below
``flows`` (``alcore``, ``oracles``, ``generators``) logs to ``logging.getLogger(__name__)``; Prefect
forwards those loggers to the UI too (:data:`LIBRARY_LOGGERS`, set as
``PREFECT_LOGGING_EXTRA_LOGGERS`` when ``flows`` is imported).
"""

from __future__ import annotations

import logging

#: The packages whose stdlib loggers Prefect attaches to flow runs.
LIBRARY_LOGGERS = ("alcore", "oracles", "generators", "flows")

_fallback = logging.getLogger("alflow")


def _stderr_fallback() -> logging.Logger:
    """The ``alflow`` logger; prints INFO and above to stderr unless the application configured it."""
    if not _fallback.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        _fallback.addHandler(handler)
        _fallback.setLevel(logging.INFO)
        _fallback.propagate = False
    return _fallback


def flow_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow/task run, else the stdlib logger ``alflow`` (to stderr)."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a flow/task run
        return _stderr_fallback()
