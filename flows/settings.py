"""Deployment settings, read from ``ALFLOW_*`` environment variables (pydantic-settings).

Credentials only come from the environment; :func:`mask_uri` hides them wherever a URI is shown.
"""

from __future__ import annotations

import re
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the store lives and how to reach it.

    ``mongodb_uri`` unset -> the embedded SecantusDB server (started on demand, data under
    ``data_dir``). ``database`` is the MongoDB database name; ``embedded_port`` the port of the
    embedded server; ``server_timeout_s`` bounds how long a call waits for an unavailable server.
    ``reports`` (``ALFLOW_REPORTS=0`` turns them off) and ``report_dir``: the per-iteration plots of
    campaigns, under ``report_dir/<campaign>``.
    """

    model_config = SettingsConfigDict(env_prefix="ALFLOW_", env_file=None, extra="ignore")

    mongodb_uri: SecretStr | None = None
    database: str = "alflow"
    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("alflow", appauthor=False)))
    embedded_port: int = 27857
    server_timeout_s: float = 20.0
    max_import_bytes: int = 200 * 1024 * 1024
    output_dir: Path = Path("runs")
    reports: bool = True
    report_dir: Path = Path("runs/reports")

    @property
    def embedded(self) -> bool:
        """True when no MongoDB URI is configured and the embedded server is used."""
        return self.mongodb_uri is None or not self.mongodb_uri.get_secret_value().strip()

    def uri_masked(self) -> str:
        """The configured URI with any password replaced by ``***`` (safe to log)."""
        if self.embedded:
            return f"embedded secantusdb on 127.0.0.1:{self.embedded_port} ({self.data_dir})"
        return mask_uri(self.mongodb_uri.get_secret_value())


_CREDENTIALS = re.compile(r"(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/]+)(?::(?P<pw>[^@/]*))?@")


def mask_uri(uri: str) -> str:
    """Replace the password in a MongoDB URI with ``***``; takes and returns a string."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; read each time so tests can change env)."""
    return Settings()
