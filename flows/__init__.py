"""Prefect flows, the MongoDB store and the CLI: the only layer that does I/O."""
