"""Every ``ALFLOW_*`` variable the product reads is a Settings field; URIs are masked and checked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from alcore.errors import ConfigError
from flows.settings import Settings, mask_uri

REPO = Path(__file__).resolve().parents[2]
TEST_HOOKS = {
    "ALFLOW_FAULT",  # the harness strips every ALFLOW_FAULT* variable
    "ALFLOW_FAULT_POINT",
    "ALFLOW_FAULT_MARKER",
    "ALFLOW_FAULTS_FULL",
    "ALFLOW_TINY_AE_DIR",
}


def test_every_alflow_variable_is_a_setting_or_a_documented_test_hook():
    out = subprocess.run(
        ["git", "grep", "-h", "-o", r"ALFLOW_[A-Z_]*", "--", "*.py", "*.yaml", "Dockerfile", "run"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    names = {n.rstrip("_") for n in re.findall(r"ALFLOW_[A-Z_]+", out)} - {"ALFLOW"}
    fields = {f"ALFLOW_{f.upper()}" for f in Settings.model_fields}
    assert names - fields - TEST_HOOKS == set()
    doc = Settings.__doc__ or ""
    assert all(h in doc for h in TEST_HOOKS)


def test_report_and_weights_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ALFLOW_REPORTS", "0")
    monkeypatch.setenv("ALFLOW_REPORT_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("ALFLOW_DATA_DIR", str(tmp_path / "d"))
    s = Settings()
    assert s.reports is False and s.report_dir == tmp_path / "r"
    assert s.user_weights_dir == tmp_path / "d" / "weights"


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("mongodb://user:secret@host:27017/db", "mongodb://user:***@host:27017/db"),
        ("mongodb://user:se@cret@127.0.0.1:1/", "mongodb://user:***@127.0.0.1:1/"),
        ("mongodb://user:se/cret@127.0.0.1:1/", "mongodb://user:***@127.0.0.1:1/"),
        (
            "mongodb+srv://user:s%40c@cluster.example.net/?retryWrites=true",
            "mongodb+srv://user:***@cluster.example.net/?retryWrites=true",
        ),
        ("mongodb://host:27017/", "mongodb://host:27017/"),
        ("mongodb://user@host/", "mongodb://user@host/"),
    ],
)
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked


def test_check_uri_is_one_line_without_the_password():
    with pytest.raises(ConfigError) as info:
        Settings(mongodb_uri="mongodb://user:se@cret@127.0.0.1:1/").check_uri()
    assert "cret" not in str(info.value) and "\\n" not in str(info.value) and "quote_plus" in str(info.value)
    Settings(mongodb_uri="mongodb://127.0.0.1:1/").check_uri()  # well formed: fine (not contacted)


def test_a_setting_that_does_not_parse_is_one_line(monkeypatch):
    from flows.settings import get_settings

    monkeypatch.setenv("ALFLOW_EMBEDDED_PORT", "abc")
    with pytest.raises(ConfigError, match="invalid setting ALFLOW_EMBEDDED_PORT: Input should be a valid integer"):
        get_settings()
