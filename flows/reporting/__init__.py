"""What a person looks at: per-iteration plots (PNG) and Prefect UI artifacts of a campaign, and the
``campaign-report`` flow that makes them for any stored campaign."""

from __future__ import annotations

from flows.reporting.iteration import (
    campaign_report_flow,
    discovery_series,
    latent_points,
    plot_discovery,
    plot_latent,
    plot_parity,
    publish_artifacts,
    publish_iteration,
    screening_parity,
    structure_rows,
    top_candidates,
    write_plots,
)

__all__ = [
    "campaign_report_flow",
    "discovery_series",
    "latent_points",
    "plot_discovery",
    "plot_latent",
    "plot_parity",
    "publish_artifacts",
    "publish_iteration",
    "screening_parity",
    "structure_rows",
    "top_candidates",
    "write_plots",
]
