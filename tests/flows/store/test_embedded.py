"""The embedded default: a SecantusDB child process started, reused and stopped."""

from __future__ import annotations

import socket

import pytest

from alcore.errors import StoreUnavailableError
from flows.settings import Settings
from flows.store import Store
from flows.store.embedded import ping, running_server, start_server, stop_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_embedded_server_start_reuse_stop_and_durability(tmp_path, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("ALFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ALFLOW_EMBEDDED_PORT", str(port))
    monkeypatch.delenv("ALFLOW_MONGODB_URI", raising=False)
    try:
        store = Store.connect(Settings())
        store.upsert_labels("c", [{"formula": "NaCl", "value": 5.0, "source": "seed"}])
        server = running_server(tmp_path)
        assert server is not None and server.port == port
        assert start_server(tmp_path, port).pid == server.pid  # reused, not a second server
        store.close()
        assert stop_server(tmp_path)
        assert not ping(server.uri, timeout_s=0.5)
        store = Store.connect(Settings())  # restarts on the same folder: data survived
        assert store.labels("c")[0]["value"] == 5.0
        store.close()
    finally:
        stop_server(tmp_path)


def test_a_port_taken_by_another_process_is_refused_before_starting(tmp_path):
    """A second data folder must not silently share (and write into) a server already on the port."""
    from flows.store.embedded import port_is_free

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(StoreUnavailableError, match=f"port {port} is already in use by another process"):
            start_server(tmp_path / "mine", port, timeout_s=5)
    assert not (tmp_path / "mine" / "db").exists()  # nothing was started or written
    assert port_is_free(port)
