"""Default oracle names, importable without torch (the CLI's option defaults read them at start-up)."""

from __future__ import annotations

#: The band-gap oracle of new campaigns, `alflow oracles predict` and pool screening (chosen on the
#: matbench_mp_gap 5-fold protocol, docs/oracles.md). The AGD experiment configs name ``resnet-agd``.
DEFAULT_BANDGAP_ORACLE = "resnet-mp-ext"

#: The stability judge of new campaigns and ``alflow structures run``: SevenNet 7net-l3i5 relaxes and
#: judges (issue 21: F1 on the hull 0.453 vs CHGNet 0.289 on 383 OQMD records, ~5.4 CPU-min per 100
#: candidates with one template; the CHGNet -> SevenNet funnel scores the same F1 at more CPU;
#: docs/structures.md). ``chgnet`` stays selectable.
DEFAULT_JUDGE = "sevennet"
