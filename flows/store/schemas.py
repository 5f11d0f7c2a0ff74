"""Document vocabularies of the data model: statuses and verdicts as ``StrEnum`` (stored as plain
strings, so existing databases and ad-hoc MongoDB queries keep working)."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    """``campaigns.status``."""

    CREATED = "created"
    RUNNING = "running"
    AWAITING_LABELS = "awaiting_labels"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StageStatus(StrEnum):
    """``iterations.stages.<name>.status``."""

    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"


class CandidateStatus(StrEnum):
    """``candidates.status``: the life of one proposed formula in an iteration."""

    ACQUIRED = "acquired"
    REJECTED = "rejected"
    AWAITING_LABEL = "awaiting_label"
    LABELLED = "labelled"
    LABEL_FAILED = "label_failed"


#: Candidate statuses the label stage (re)labels: accepted picks, whatever their labelling progress.
LABELLABLE: frozenset[CandidateStatus] = frozenset(
    {CandidateStatus.ACQUIRED, CandidateStatus.AWAITING_LABEL, CandidateStatus.LABELLED}
)
