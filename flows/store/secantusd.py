"""``python -m flows.store.secantusd ARGS``: the ``secantusd-py`` server with alflow's SecantusDB patch applied.

``flows.store.embedded.start_server`` runs this instead of ``secantusd-py`` so that the embedded default
database answers compound-index range queries correctly (see :mod:`flows.store.secantus_patch`). The
arguments are those of ``secantusd-py``.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Apply the patch, then run SecantusDB's own command-line main with ``sys.argv[1:]``."""
    from secantus.cli import main as secantus_main

    from flows.store.secantus_patch import apply

    apply()
    return int(secantus_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
