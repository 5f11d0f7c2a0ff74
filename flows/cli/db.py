"""``alflow db start|stop|status``: the embedded database (SecantusDB) used when ALFLOW_MONGODB_URI is unset."""

from __future__ import annotations

from flows.cli.common import console, examples, open_store, typer_app

app = typer_app(
    "The embedded database (SecantusDB) used when ALFLOW_MONGODB_URI is unset.",
    "alflow db status",
    "alflow db start",
    "alflow db stop",
)


@app.command("start", epilog=examples("alflow db start"))
def db_start() -> None:
    """Start the embedded database (or report the one already running)."""
    from flows.settings import get_settings
    from flows.store.embedded import start_server

    s = get_settings()
    server = start_server(s.data_dir, s.embedded_port)
    console.print(f"embedded database running: pid {server.pid}, {server.uri}, data {server.storage_path}")


@app.command("stop", epilog=examples("alflow db stop"))
def db_stop() -> None:
    """Stop the embedded database (SIGTERM; waits for it to exit)."""
    from flows.settings import get_settings
    from flows.store.embedded import stop_server

    stopped = stop_server(get_settings().data_dir)
    console.print("stopped" if stopped else "no embedded database was running")


@app.command("status", epilog=examples("alflow db status", "ALFLOW_MONGODB_URI=mongodb://host:27017/ alflow db status"))
def db_status() -> None:
    """Say which database is configured and whether it answers."""
    from flows.settings import get_settings
    from flows.store.embedded import running_server

    s = get_settings()
    if s.embedded:
        server = running_server(s.data_dir)
        console.print(
            f"embedded: {'running, pid ' + str(server.pid) + ', ' + server.uri if server else 'not running'}"
            f" (data {s.data_dir})"
        )
        if server is not None and not server.patched:
            console.print(
                "warning: started without alflow's SecantusDB range-query fix (an older alflow); "
                "run `alflow db stop` so that the next command restarts it patched"
            )
    else:
        store = open_store()
        console.print(f"MongoDB {s.uri_masked()}: reachable, database {store.database_name}")
