"""flows.config's shared YAML reader: the overrides and the file named in its errors (the bad-file
cases themselves are in tests/flows/test_bad_inputs.py, through load_config)."""

from __future__ import annotations

import pytest

from alcore.errors import ConfigError
from flows.config import read_settings


def test_read_settings_applies_overrides_and_names_the_file_in_errors(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("name: a\nseed: 1\n")
    assert read_settings(path, "benchmark config", name="b", seed=None) == {"name": "b", "seed": 1}
    with pytest.raises(ConfigError, match="benchmark config .*missing.yaml not found"):
        read_settings(tmp_path / "missing.yaml", "benchmark config")
