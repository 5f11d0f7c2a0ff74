"""The embedded default database: a SecantusDB server run as a child process.

With no ``ALFLOW_MONGODB_URI`` the project starts ``secantusd-py --sync-on-commit`` on 127.0.0.1 (as
``python -m flows.store.secantusd``: the same server with :mod:`flows.store.secantus_patch`'s fix of a compound-index
range bug applied) with its data under the per-user data folder, waits until it answers ``ping``, reuses a
server that is already running there, and stops it with SIGTERM (which takes 5-9 s; we wait for the
process to exit before the folder can be reused). The product talks to it through the same
pymongo/GridFS code as to a production MongoDB.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from alcore.errors import StoreUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server: its ``pid``, ``port``, data folder and ``uri``; ``patched``: started
    with :mod:`flows.store.secantus_patch` (False for a server an older alflow started and that is still
    running: it answers some compound-index range queries wrongly until ``alflow db stop``)."""

    pid: int
    port: int
    storage_path: Path
    patched: bool = True

    @property
    def uri(self) -> str:
        """``mongodb://127.0.0.1:PORT/`` with a direct connection (single node)."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


def _state_file(data_dir: Path) -> Path:
    return data_dir / "secantusd.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ping(uri: str, timeout_s: float = 1.0) -> bool:
    """True if a MongoDB-protocol server at ``uri`` answers ``ping`` within ``timeout_s`` seconds."""
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000), connect=True)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def running_server(data_dir: Path) -> EmbeddedServer | None:
    """The embedded server recorded for ``data_dir`` if its process is alive and answers, else None."""
    state = _state_file(data_dir)
    if not state.exists():
        return None
    try:
        info = json.loads(state.read_text())
        server = EmbeddedServer(
            int(info["pid"]), int(info["port"]), Path(info["storage_path"]), bool(info.get("secantus_patch", False))
        )
    except (ValueError, KeyError, OSError):
        return None
    if _pid_alive(server.pid) and ping(server.uri):
        return server
    return None


def secantusd_command() -> list[str]:
    """The command that runs the patched ``secantusd-py`` (:mod:`flows.store.secantusd`) with this interpreter.

    Raises :class:`StoreUnavailableError` when SecantusDB is not installed.
    """
    import importlib.util

    if importlib.util.find_spec("secantus") is None:
        raise StoreUnavailableError(
            "SecantusDB is not installed: install the project (pip install -e .) or set ALFLOW_MONGODB_URI "
            "to a MongoDB server"
        )
    return [sys.executable, "-m", "flows.store.secantusd"]


def server_command(port: int, storage: Path | str, *extra: str) -> list[str]:
    """The full command line of an embedded server on 127.0.0.1:``port`` storing in ``storage``
    (synced on commit, warnings only), plus ``extra`` arguments."""
    return [
        *secantusd_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage),
        "--sync-on-commit",
        "--log-level",
        "WARNING",
        *extra,
    ]


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:``port`` (a bind with SO_REUSEADDR succeeds)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(data_dir: Path, port: int, timeout_s: float = 60.0) -> EmbeddedServer:
    """Start (or reuse) the embedded server for ``data_dir`` on ``port``; returns it once it answers ping.

    The server runs detached from this process (its own session), so it survives the command that
    started it; ``alflow db stop`` stops it. Raises :class:`StoreUnavailableError` if it does not
    answer within ``timeout_s`` seconds (its log is ``data_dir/secantusd.log``) and, before starting
    anything, if another process already listens on ``port`` (so a command never writes into another
    data folder's server by accident).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = running_server(data_dir)
    if existing:
        if not existing.patched:
            log.warning(
                "the embedded database (pid %s) was started without the compound-range fix "
                "(flows.store.secantus_patch); run `alflow db stop` so the next command restarts it",
                existing.pid,
            )
        return existing
    if not port_is_free(port):
        raise StoreUnavailableError(
            f"port {port} is already in use by another process, not by the embedded database of {data_dir}; "
            "set ALFLOW_EMBEDDED_PORT to a free port (or ALFLOW_MONGODB_URI to use that server on purpose)"
        )
    storage = data_dir / "db"
    storage.mkdir(parents=True, exist_ok=True)
    logfile = open(data_dir / "secantusd.log", "ab")  # noqa: SIM115 - handed to the child
    cmd = server_command(port, storage)
    proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    server = EmbeddedServer(proc.pid, port, storage)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StoreUnavailableError(
                f"embedded database exited with code {proc.returncode}; see {data_dir / 'secantusd.log'} "
                f"(is port {port} taken? set ALFLOW_EMBEDDED_PORT)"
            )
        if ping(server.uri, timeout_s=0.5):
            state = {"pid": proc.pid, "port": port, "storage_path": str(storage), "secantus_patch": True}
            _state_file(data_dir).write_text(json.dumps(state))
            log.info("embedded database started (pid %s, port %s, %s)", proc.pid, port, storage)
            return server
        time.sleep(0.2)
    proc.terminate()
    raise StoreUnavailableError(
        f"embedded database did not answer within {timeout_s:.0f} s; see {data_dir / 'secantusd.log'}"
    )


def stop_server(data_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stop the embedded server of ``data_dir`` with SIGTERM and wait for it to exit.

    Returns True if a server was stopped, False if none was running. Falls back to SIGKILL after
    ``timeout_s`` seconds (acknowledged writes survive: the server runs with --sync-on-commit).
    """
    state = _state_file(data_dir)
    if not state.exists():
        return False
    try:
        pid = int(json.loads(state.read_text())["pid"])
    except (ValueError, KeyError, OSError):
        state.unlink(missing_ok=True)
        return False
    if not _pid_alive(pid):
        state.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap(pid)
    state.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect a child's exit status if it is ours (so it does not linger as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
