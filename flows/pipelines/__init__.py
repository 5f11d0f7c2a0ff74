"""Prefect pipelines (benchmark and batch flows)."""
