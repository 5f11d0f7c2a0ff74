"""Test hooks of the crash-anywhere suite: a stage hook and SIGKILL fault points (no effect unless armed)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

#: Test hook: called with (stage, "before" | "after", iteration); fault injection uses it.
STAGE_HOOK: Callable[[str, str, int], None] | None = None


def call_stage_hook(stage: str, when: str, iteration: int) -> None:
    """Call :data:`STAGE_HOOK` if a test set it."""
    if STAGE_HOOK is not None:
        STAGE_HOOK(stage, when, iteration)


def fault_point(name: str) -> None:
    """Fault-injection point for the crash-anywhere tests (no effect unless armed).

    ``ALFLOW_FAULT_POINT=<name>`` plus ``ALFLOW_FAULT_MARKER=<file>`` makes the process SIGKILL
    itself the first time it reaches ``name`` (the marker file records that it happened, so the
    restarted run goes through). Names: ``<stage>:<iteration>:before``, ``<stage>:<iteration>:after``
    and the mid-write points ``acquire:<i>:mid-candidates``, ``label:<i>:mid-labels``.
    """
    if os.environ.get("ALFLOW_FAULT_POINT") != name:
        return
    marker = Path(os.environ.get("ALFLOW_FAULT_MARKER", ".alflow-fault-fired"))
    if marker.exists():
        return
    marker.write_text(name)
    os.kill(os.getpid(), signal.SIGKILL)
