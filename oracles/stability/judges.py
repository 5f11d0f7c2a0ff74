"""Build the stability judge a configuration names: ``chgnet``, ``sevennet`` (or a checkpoint), ``funnel``.

* ``sevennet`` (the default, :data:`oracles.defaults.DEFAULT_JUDGE`): the SevenNet checkpoint
  :data:`~oracles.stability.relaxers.DEFAULT_SEVENNET` relaxes and judges; ``7net-0``, ``7net-l3i5``,
  ``7net-mf-0`` name a checkpoint explicitly.
* ``chgnet``: CHGNet 0.4.2 relaxes and judges (fastest; the default before issue 21).
* ``funnel``: CHGNet relaxes and pre-screens every trial, SevenNet re-relaxes and judges the
  survivors (:class:`~oracles.stability.funnel.FunnelChecker`).

Every judge returns :class:`oracles.stability.checker.Verdict` objects of the same shape.
"""

from __future__ import annotations

from alcore.errors import ConfigError
from oracles.defaults import DEFAULT_JUDGE
from oracles.stability.relaxers import DEFAULT_SEVENNET, SEVENNET_CHECKPOINTS, get_relaxer

#: judge names a configuration or ``alflow structures run --judge`` accepts
JUDGES: tuple[str, ...] = ("chgnet", "sevennet", "funnel", *SEVENNET_CHECKPOINTS)


def make_checker(
    judge: str = DEFAULT_JUDGE,
    library=None,
    e_hull_max: float = 0.1,
    fmax: float = 0.1,
    steps: int = 200,
    compute_hull: bool = True,
    threads: int | None = 1,
    mp_phases=True,
    model_phases: bool = True,
):
    """A StabilityChecker (or FunnelChecker) for ``judge`` (one of :data:`JUDGES`); ConfigError otherwise.
    ``mp_phases`` and ``model_phases`` choose the hull's competing phases (see
    :class:`~oracles.stability.checker.StabilityChecker`)."""
    from oracles.stability.checker import StabilityChecker

    if judge not in JUDGES:
        raise ConfigError(f"unknown stability judge {judge!r}; use one of: {', '.join(JUDGES)}")
    kwargs = dict(
        library=library,
        e_hull_max=e_hull_max,
        fmax=fmax,
        steps=steps,
        compute_hull=compute_hull,
        mp_phases=mp_phases,
        model_phases=model_phases,
    )

    def checker(name: str) -> StabilityChecker:
        if name == "chgnet":
            from oracles.stability.checker import get_model

            return StabilityChecker(model=get_model(threads=threads), **kwargs)
        return StabilityChecker(relaxer=get_relaxer(name, threads), **kwargs)

    if judge == "funnel":
        from oracles.stability.funnel import FunnelChecker

        return FunnelChecker(checker("chgnet"), checker(DEFAULT_SEVENNET))
    return checker(DEFAULT_SEVENNET if judge == "sevennet" else judge)
