"""Database faults: the embedded server SIGKILLed mid-write keeps every acknowledged write; an
outage during a run is retried (database faults only), fails within a bounded time with a clear
message when it lasts, and the next run resumes once the server is back."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo.errors import ConnectionFailure

from alcore.errors import StoreUnavailableError
from flows.campaign import faults as campaign_faults
from flows.campaign import run_campaign_in
from flows.config import parse_config
from flows.settings import Settings
from flows.store import Store
from flows.store.embedded import EmbeddedServer, ping, start_server, stop_server
from tests.flows.campaign.fault_harness import HarnessEnv, invariant_problems, run_child, tiny_autoencoder, tiny_config

REPO = Path(__file__).resolve().parents[3]

WRITER = r"""
import sys
from flows.store import Store
store = Store.connect()
for i in range(1_000_000):
    store.upsert_labels("durable", [{"formula": f"F{i}", "value": float(i), "source": "seed", "iteration": 0}])
    print(i, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(server: EmbeddedServer) -> None:
    """SIGKILL the embedded server and reap it (it is our child)."""
    os.kill(server.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(server.pid, 0)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A data folder and port for an embedded server (stopped at the end whatever happened)."""
    port = _free_port()
    try:
        yield tmp_path / "alflow-data", port
    finally:
        stop_server(tmp_path / "alflow-data")


@pytest.fixture(scope="module")
def ae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny autoencoder (trained once per session base folder)."""
    return tiny_autoencoder(tmp_path_factory.getbasetemp())


def _store(uri: str) -> Store:
    return Store.connect(Settings(mongodb_uri=uri, server_timeout_s=2.0, database="alflow"))


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill_of_the_embedded_server(embedded):
    data_dir, port = embedded
    server = start_server(data_dir, port)
    env = {**os.environ, "ALFLOW_MONGODB_URI": server.uri, "ALFLOW_SERVER_TIMEOUT_S": "2", "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    acked: list[int] = []
    try:
        for line in writer.stdout:  # each line is printed after the server acknowledged the write
            acked.append(int(line))
            if len(acked) == 300:
                _kill(server)  # mid-loop: the writer is between (or inside) writes
                break
        acked += [int(line) for line in writer.stdout]  # acknowledgements already in flight
        writer.wait(timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode != 0  # the writer saw the server die
    writer_err = writer.stderr.read()
    assert "pymongo.errors" in writer_err or "StoreUnavailableError" in writer_err, writer_err[-2000:]
    restarted = start_server(data_dir, port)
    assert restarted.pid != server.pid
    store = _store(restarted.uri)
    try:
        present = {int(d["formula"][1:]) for d in store.db.labels.find({"campaign": "durable"}, {"formula": 1})}
    finally:
        store.close()
    missing = sorted(set(acked) - present)
    assert missing == [], f"{len(missing)} acknowledged write(s) lost after SIGKILL: {missing[:10]}"
    assert len(present) - len(acked) in (0, 1)  # at most the one write in flight when the server died


@pytest.mark.slow
def test_campaign_resumes_after_runner_and_embedded_server_are_killed(embedded, ae, prefect_harness, tmp_path):
    """Runner SIGKILLed mid-write of labels and the server SIGKILLed right after (a host crash): after
    restarting the server the next run finishes with no duplicates and nothing left running."""
    import prefect.settings

    data_dir, port = embedded
    server = start_server(data_dir, port)
    henv = HarnessEnv(server.uri, "alflow", prefect.settings.PREFECT_API_URL.value(), tmp_path / "scratch")
    cfg = tiny_config(ae, "hostcrash", iterations=1)
    dead = run_child(henv, cfg, fault="label:1:mid-labels")
    assert dead.returncode == -signal.SIGKILL, dead.output
    _kill(server)
    assert not ping(server.uri, timeout_s=0.5)
    server = start_server(data_dir, port)
    done = run_child(henv, cfg)
    assert done.returncode == 0, done.output
    store = _store(server.uri)
    try:
        assert invariant_problems(store.db, "hostcrash") == []
        assert store.db.labels.count_documents({"campaign": "hostcrash"}) == 30 + 3
        assert {c["status"] for c in store.candidates("hostcrash")} == {"labelled"}
    finally:
        store.close()


@pytest.mark.slow
def test_short_outage_is_retried_and_the_run_finishes(embedded, ae, prefect_harness, monkeypatch):
    """The server dies before the label stage and is back 3 s later: the stage's Prefect retry policy
    (database faults only) re-runs it and the campaign finishes cleanly."""
    data_dir, port = embedded
    server = start_server(data_dir, port)
    store = _store(server.uri)
    calls: list[float] = []
    restarter: list[threading.Thread] = []

    def hook(stage: str, when: str, iteration: int) -> None:
        if (stage, when, iteration) != ("label", "before", 1):
            return
        calls.append(time.monotonic())
        if len(calls) == 1:
            _kill(server)

            def back() -> None:
                time.sleep(3)
                start_server(data_dir, port)

            restarter.append(threading.Thread(target=back))
            restarter[0].start()

    monkeypatch.setattr(campaign_faults, "STAGE_HOOK", hook)
    try:
        result = run_campaign_in(store, parse_config(tiny_config(ae, "blip", iterations=1)), owner="t")
        assert result["status"] == "finished"
        assert len(calls) >= 2  # the label stage ran again after the outage
        assert invariant_problems(store.db, "blip") == []
        assert store.db.labels.count_documents({"campaign": "blip"}) == 30 + 3
    finally:
        for t in restarter:
            t.join()
        store.close()


@pytest.mark.slow
def test_lasting_outage_fails_in_bounded_time_and_next_run_resumes(embedded, ae, prefect_harness, monkeypatch):
    """The server dies before ``fit`` of iteration 1 and stays down: the run raises a connection error
    after the retry budget (4 retries, 2+5+15+30 s delays, 2 s server-selection timeout) instead of
    hanging; once the server is back the next run resumes at ``fit`` and finishes."""
    data_dir, port = embedded
    server = start_server(data_dir, port)
    store = _store(server.uri)
    cfg = parse_config(tiny_config(ae, "outage", iterations=1))

    def hook(stage: str, when: str, iteration: int) -> None:
        if (stage, when, iteration) == ("fit", "before", 1) and ping(server.uri, timeout_s=0.3):
            _kill(server)

    monkeypatch.setattr(campaign_faults, "STAGE_HOOK", hook)
    t0 = time.monotonic()
    with pytest.raises((ConnectionFailure, StoreUnavailableError)) as info:
        run_campaign_in(store, cfg, owner="t")
    elapsed = time.monotonic() - t0
    assert elapsed < 180, f"the failing run took {elapsed:.0f} s"
    assert str(port) in str(info.value)  # names the server it could not reach
    monkeypatch.setattr(campaign_faults, "STAGE_HOOK", None)

    # while it is down every command fails fast with one clear line
    code, err = _cli_against(Settings(mongodb_uri=server.uri, server_timeout_s=1.0))
    assert code == 2 and "Traceback" not in err
    assert f"cannot reach MongoDB at {server.uri} within 1 s" in " ".join(err.split())

    server = start_server(data_dir, port)
    try:
        assert store.stage_result("outage", 0, "seed") is not None  # done before the outage: kept
        result = run_campaign_in(store, cfg, owner="t")  # same owner: re-enters its (unreleased) lease
        assert result["status"] == "finished"
        assert invariant_problems(store.db, "outage") == []
        assert store.db.labels.count_documents({"campaign": "outage"}) == 30 + 3
    finally:
        store.close()


def _cli_against(settings: Settings) -> tuple[int, str]:
    """``alflow campaign list`` in a child process against ``settings``' server; (status, stderr)."""
    env = {
        **os.environ,
        "ALFLOW_MONGODB_URI": settings.mongodb_uri.get_secret_value(),
        "ALFLOW_SERVER_TIMEOUT_S": str(settings.server_timeout_s),
    }
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("alflow")), "campaign", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    return proc.returncode, proc.stderr
