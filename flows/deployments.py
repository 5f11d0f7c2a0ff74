"""Deployable Prefect flows with plain parameters (entrypoints of ``deploy/prefect.yaml`` and of
``alflow ops serve``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from oracles.defaults import DEFAULT_BANDGAP_ORACLE


@flow(name="screen-pool-job", log_prints=True)
def screen_pool_job(
    pool: str,
    model: str = DEFAULT_BANDGAP_ORACLE,
    gap_min: float | None = None,
    gap_max: float | None = None,
    max_atoms: int | None = 7,
    max_elements: int | None = 3,
    rescreen: bool = False,
    dask_address: str | None = None,
    dask_workers: int = 0,
) -> dict[str, Any]:
    """Deployable entry for pool screening with plain parameters: runs the ``screen-pool`` flow as a
    subflow. ``dask_address`` (``tcp://scheduler:8786``) sends its batch tasks to a Dask cluster;
    ``dask_workers > 0`` starts a local Dask cluster of that many workers instead. Returns its summary."""
    from flows.pipelines.screening import screen_pool_flow

    return screen_pool_flow(
        pool,
        model=model,
        gap_min=gap_min,
        gap_max=gap_max,
        max_atoms=max_atoms,
        max_elements=max_elements,
        rescreen=rescreen,
        dask_address=dask_address,
        dask_local=dask_workers > 0,
        dask_workers=max(dask_workers, 1),
    )
