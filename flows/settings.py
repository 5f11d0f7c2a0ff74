"""Deployment settings, read from ``ALFLOW_*`` environment variables (pydantic-settings).

Every ``ALFLOW_*`` variable the product reads is a field of :class:`Settings` (the test hooks listed
in its docstring are the exceptions). Credentials only come from the environment; :func:`mask_uri`
hides them wherever a URI is shown.
"""

from __future__ import annotations

import re
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alcore.errors import ConfigError


class Settings(BaseSettings):
    """Where the store lives and how to reach it, where outputs go.

    ``mongodb_uri`` unset -> the embedded SecantusDB server (started on demand, data under
    ``data_dir``). ``database`` is the MongoDB database name; ``embedded_port`` the port of the
    embedded server; ``server_timeout_s`` bounds how long a call waits for an unavailable server.
    ``max_import_bytes`` caps ``labels import``. ``output_dir`` holds CIFs of the campaign's structure
    stage; ``reports`` (``ALFLOW_REPORTS=0`` turns them off) and ``report_dir`` the per-iteration PNG
    reports of a running campaign. ``weights_dir`` is where the training commands write weights
    (default ``<data_dir>/weights``, outside the checkout: the shipped weights in ``data/weights`` are
    only replaced with ``--replace-shipped``). ``project_data`` mirrors ``ALFLOW_PROJECT_DATA``, the
    folder of the committed data sets and weights (read by :mod:`alcore.paths` at import, which cannot
    depend on this module). ``torch_threads`` (set by the container images) becomes ``OMP_NUM_THREADS``
    for the ``alflow`` command line unless that is set; unset means torch's default.

    Test hooks, not settings (read directly by the code that uses them): ``ALFLOW_FAULT_POINT`` and
    ``ALFLOW_FAULT_MARKER`` (``flows.campaign.fault_point``: SIGKILL at a named point, for the
    crash-anywhere tests), ``ALFLOW_FAULTS_FULL`` and ``ALFLOW_TINY_AE_DIR`` (test suite only).
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
    weights_dir: Path | None = None
    project_data: Path | None = None
    torch_threads: int | None = Field(default=None, ge=1)

    @property
    def embedded(self) -> bool:
        """True when no MongoDB URI is configured and the embedded server is used."""
        return self.mongodb_uri is None or not self.mongodb_uri.get_secret_value().strip()

    @property
    def user_weights_dir(self) -> Path:
        """Folder the training commands write to by default (``weights_dir`` or ``<data_dir>/weights``)."""
        return self.weights_dir or self.data_dir / "weights"

    def uri_masked(self) -> str:
        """The configured URI with any password replaced by ``***`` (safe to log)."""
        if self.embedded:
            return f"embedded secantusdb on 127.0.0.1:{self.embedded_port} ({self.data_dir})"
        return mask_uri(self.mongodb_uri.get_secret_value())

    def check_uri(self) -> None:
        """Parse the configured MongoDB URI (resolving ``mongodb+srv`` hosts) before connecting.

        Raises :class:`ConfigError` with the masked URI and pymongo's reason for a malformed URI (e.g.
        an unescaped ``@`` or ``/`` in the password) or an unresolvable ``+srv`` host.
        """
        if self.embedded:
            return
        from pymongo.errors import ConfigurationError
        from pymongo.uri_parser import parse_uri

        uri = self.mongodb_uri.get_secret_value().strip()
        try:
            parse_uri(uri, connect_timeout=self.server_timeout_s)
        except (ConfigurationError, ValueError) as exc:
            reason = str(exc).replace(uri, mask_uri(uri)).splitlines()[0] if str(exc) else type(exc).__name__
            if "quote_plus" in reason:
                hint = ""
            elif "DNS" in reason or uri.startswith("mongodb+srv://"):
                hint = "; check the host name and your DNS"
            else:
                hint = "; see https://www.mongodb.com/docs/manual/reference/connection-string/"
            raise ConfigError(f"invalid ALFLOW_MONGODB_URI {mask_uri(uri)}: {reason}{hint}") from None


_SCHEME = re.compile(r"^(?P<scheme>mongodb(?:\+srv)?://)(?P<rest>.*)$", re.DOTALL)


def mask_uri(uri: str) -> str:
    """Replace the password in a MongoDB URI with ``***``; takes and returns a string.

    The credentials end at the *last* ``@`` before the query string, so a password with an unescaped
    ``@`` or ``/`` (a malformed URI) is masked whole too.
    """
    m = _SCHEME.match(uri)
    if not m:
        return uri
    rest = m["rest"]
    authority_end = rest.find("?") if "?" in rest else len(rest)
    at = rest.rfind("@", 0, authority_end)
    if at < 0:
        return uri
    userinfo = rest[:at]
    if ":" not in userinfo:
        return uri
    return f"{m['scheme']}{userinfo.split(':', 1)[0]}:***@{rest[at + 1 :]}"


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; read each time so tests can change env).

    Raises :class:`ConfigError` naming the ``ALFLOW_*`` variable for a value that does not parse."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"ALFLOW_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid setting {problems}") from None
