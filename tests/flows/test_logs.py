"""The one logging path: Prefect's run logger inside a run, the ``alflow`` logger outside one."""

from __future__ import annotations

import logging
import os

from prefect import flow

from flows.logs import LIBRARY_LOGGERS, flow_logger


def test_outside_a_run_messages_go_to_stderr(capsys) -> None:
    logger = flow_logger()
    assert isinstance(logger, logging.Logger) and logger.name == "alflow"
    logger.info("pool has %d documents", 3)
    assert "pool has 3 documents" in capsys.readouterr().err


def test_inside_a_run_it_is_prefects_run_logger(prefect_harness) -> None:
    @flow
    def probe() -> str:
        return type(flow_logger()).__name__

    assert probe() != "Logger"  # Prefect's PrefectLogAdapter, which sends records to the UI
    assert set(LIBRARY_LOGGERS) <= set(os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"].split(","))
