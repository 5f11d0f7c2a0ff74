"""The one logging path: Prefect's run logger inside a run, the ``alflow`` logger outside one."""

from __future__ import annotations

import logging
import os

from prefect import flow

from flows.logs import LIBRARY_LOGGERS, flow_logger


def test_outside_a_run_messages_go_to_stderr() -> None:
    logger = flow_logger()
    assert isinstance(logger, logging.Logger) and logger.name == "alflow"
    assert logger.isEnabledFor(logging.INFO)
    assert any(isinstance(h, logging.StreamHandler) for h in logger.handlers)  # stderr unless configured
    seen: list[str] = []
    probe = logging.Handler()
    probe.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(probe)
    try:
        logger.info("pool has %d documents", 3)
    finally:
        logger.removeHandler(probe)
    assert seen == ["pool has 3 documents"]


def test_inside_a_run_it_is_prefects_run_logger(prefect_harness) -> None:
    @flow
    def probe() -> str:
        return type(flow_logger()).__name__

    assert probe() != "Logger"  # Prefect's PrefectLogAdapter, which sends records to the UI
    assert set(LIBRARY_LOGGERS) <= set(os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"].split(","))
