"""Default oracle names, importable without torch (the CLI's option defaults read them at start-up)."""

from __future__ import annotations

#: The band-gap oracle of new campaigns, `alflow oracles predict` and pool screening (chosen on the
#: matbench_mp_gap 5-fold protocol, docs/oracles.md). The AGD experiment configs name ``resnet-agd``.
DEFAULT_BANDGAP_ORACLE = "resnet-mp-union"
