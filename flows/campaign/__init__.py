"""The campaign: the closed active-learning loop as a resumable Prefect flow.

``context`` (what every stage needs), ``stages`` (the stages, declared once in a registry),
``runner`` (idempotent stage runner, iteration hooks, the ``campaign`` flow), ``faults`` (the
crash-anywhere test hooks). The proposal logic itself is pure: :mod:`alcore.recommend`.
"""

from __future__ import annotations

from flows.campaign.context import CampaignContext, seed_table, stage_seed
from flows.campaign.runner import LEASE_TTL_S, campaign_flow, campaign_summary, run_campaign_in, run_stage
from flows.campaign.stages import ITERATION_STAGES, SEED_STAGE, STAGES, Stage, Waiting

__all__ = [
    "ITERATION_STAGES",
    "LEASE_TTL_S",
    "SEED_STAGE",
    "STAGES",
    "CampaignContext",
    "Stage",
    "Waiting",
    "campaign_flow",
    "campaign_summary",
    "run_campaign_in",
    "run_stage",
    "seed_table",
    "stage_seed",
]
