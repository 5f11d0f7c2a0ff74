"""Pipelines: multi-stage Prefect flows (benchmarks of the whole pipeline, ...)."""
