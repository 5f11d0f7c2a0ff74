"""``alflow db status`` (issue 19, finding 9: database configuration errors are one line)."""

from __future__ import annotations

from tests.flows.cli.conftest import assert_user_error


def test_status_of_a_configured_server(cli, store):
    code, out, err = cli("db", "status")
    assert code == 0, err
    assert f"reachable, database {store.db.name}" in " ".join(out.split())


def test_status_with_a_malformed_uri(cli):
    code, _, err = cli("db", "status", ALFLOW_MONGODB_URI="mongodb://u:p@ss@127.0.0.1:1/")
    assert_user_error(code, err, "invalid ALFLOW_MONGODB_URI mongodb://u:***@127.0.0.1:1/")


def test_a_setting_that_does_not_parse(cli):
    code, _, err = cli("db", "status", ALFLOW_SERVER_TIMEOUT_S="soon")
    assert_user_error(code, err, "invalid setting ALFLOW_SERVER_TIMEOUT_S")
