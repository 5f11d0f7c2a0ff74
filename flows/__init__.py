"""Prefect flows, the MongoDB store and the CLI: the only layer that does I/O."""

import os

from flows.logs import LIBRARY_LOGGERS

# The library packages' stdlib loggers reach the Prefect UI through the same path as flow logs.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(LIBRARY_LOGGERS))
