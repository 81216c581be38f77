"""The configuration: frozen dataclasses (model) and the YAML loader that validates them."""

from __future__ import annotations

from natkeepalive.config.loader import config_path, load_config, parse_config
from natkeepalive.config.model import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATUS_FILE,
    BindingConfig,
    Config,
    HooksConfig,
    LogConfig,
    ProbeSettings,
    Target,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATUS_FILE",
    "BindingConfig",
    "Config",
    "HooksConfig",
    "LogConfig",
    "ProbeSettings",
    "Target",
    "config_path",
    "load_config",
    "parse_config",
]
