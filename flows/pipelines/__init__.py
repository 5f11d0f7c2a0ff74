"""Prefect flows beside the campaign loop: pool generation and screening, structures, generator and
oracle training, label import, and the recovery / rediscovery experiments. Each module is one flow
(or one family of flows) with its I/O; the computation lives in ``alcore``/``generators``/``oracles``."""
