"""The stages of the hold-out rediscovery benchmark and what each one's result depends on.

A stage's *settings digest* covers the config fields it reads and, recursively, the digests of the
stages it reads from. Every stored stage records its digest; a stage whose stored digest differs
from the config's is stale and is redone (and with it every stage that reads it), so editing a
benchmark YAML and rerunning it never mixes results of two settings. Pure config logic: no I/O.
"""

from __future__ import annotations

import hashlib
import json

from flows.pipelines.rediscovery_config import POOL_ROUTES, ROUTES, RediscoveryConfig

#: Stages every route needs, in order (the autoencoder only with a campaign route).
SHARED_STAGES: tuple[str, ...] = ("split", "data", "oracle", "autoencoder", "matgan", "pool", "screening")
#: Routes that run a campaign (they need the autoencoder).
CAMPAIGN_ROUTES: tuple[str, ...] = ("pool-al", "continuous-al")

#: What each stage's result depends on: ``(config fields, upstream stages)``. The split seed,
#: protocol, fraction, MP data hash and universe limit are in the split key of every stage id. A
#: pool route on another generator's pool (``<stage>@<generator>``) reads that generator's pool and
#: screening instead of MatGAN's. Upstream stages a config does not run (``eform`` without
#: decode-then-select) are left out.
STAGE_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "split": ((), ()),
    "data": (("seeds", "validation"), ("split",)),
    "oracle": (("oracle",), ("split",)),
    "eform": (("eform",), ("split",)),
    "autoencoder": (("autoencoder",), ("split",)),
    "matgan": (("matgan",), ("split",)),
    "pool": (("pool_draws", "max_atoms", "max_elements"), ("matgan",)),
    "complm": (("complm",), ("split",)),
    "pool@complm": (("complm", "max_atoms", "max_elements"), ("complm", "pool")),
    "screening": ((), ("pool", "oracle")),
    "judged-screening": (("judged",), ("pool", "oracle", "eform")),
    "pool-al": (
        ("acquisitions", "pool_q", "beta", "max_atoms", "max_elements"),
        ("data", "oracle", "autoencoder", "pool"),
    ),
    "continuous-al": (("continuous", "max_atoms", "max_elements"), ("data", "oracle", "eform", "autoencoder", "pool")),
    "random-pool-labels": (("acquisitions",), ("data", "pool", "screening")),
    "random-mp-labels": (("acquisitions",), ("data", "pool")),
    "random": (("random_compositions", "max_atoms", "max_elements"), ("pool",)),
    "stability": (("stability",), ROUTES),  # it judges lists of any route
}


def stages_for(cfg: RediscoveryConfig) -> list[str]:
    """The stages a config runs, in order: the shared ones (the autoencoder only if a campaign route
    runs; the formation-energy model only for decode-then-select or screening by the judges), each
    extra generator's model, pool and plain screening, then every route (a pool route once per
    generator), then the stability filter if the config has one."""
    shared = [s for s in SHARED_STAGES if s != "autoencoder" or any(r in cfg.routes for r in CAMPAIGN_ROUTES)]
    decode_select = "continuous-al" in cfg.routes and cfg.continuous.strategy == "decode_select"
    if decode_select or "judged-screening" in cfg.routes:
        shared.insert(shared.index("oracle") + 1, "eform")
    extra = [g for g in cfg.generators if g != "matgan"]
    for gen in extra:
        shared += [gen, f"pool@{gen}", f"screening@{gen}"]
    routes = []
    for r in cfg.routes:
        if r == "screening":
            continue
        routes.append(r)
        if r in POOL_ROUTES:
            routes += [f"{r}@{gen}" for gen in extra]
    return shared + routes + (["stability"] if cfg.stability is not None else [])


def stage_inputs(stage: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(config fields, upstream stages)`` of ``stage``, also for ``<pool route>@<generator>``
    (whose upstream ``pool`` / ``screening`` become that generator's). Raises KeyError if unknown."""
    if stage in STAGE_INPUTS:
        return STAGE_INPUTS[stage]
    base, _, gen = stage.partition("@")
    fields, upstream = STAGE_INPUTS[base]
    if not gen or base not in POOL_ROUTES:
        raise KeyError(stage)
    return fields, tuple(f"{u}@{gen}" if u in ("pool", "screening") else u for u in upstream)


def stage_settings(cfg: RediscoveryConfig, stage: str) -> str:
    """12 hex digits identifying everything ``stage``'s result depends on under ``cfg``: its config
    fields and, recursively, the settings of the stages it reads (see :data:`STAGE_INPUTS`)."""
    runs = set(stages_for(cfg))
    memo: dict[str, str] = {}

    def digest(name: str) -> str:
        if name not in memo:
            fields, upstream = stage_inputs(name)
            own = cfg.model_dump(mode="json", include=set(fields))
            above = {u: digest(u) for u in upstream if u in runs}
            blob = json.dumps({"stage": name, "fields": own, "upstream": above}, sort_keys=True)
            memo[name] = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return memo[name]

    return digest(stage)
