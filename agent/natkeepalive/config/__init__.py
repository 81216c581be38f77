"""The configuration: frozen dataclasses (model) and the YAML loader that validates them.

The loader is imported on first use of one of its names, not with the package: the daemon uses
the model only and loads the file in a short-lived child (runtime/configproc.py), so PyYAML never
sits in the long-running process (docs/performance.md).
"""

from __future__ import annotations

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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkeepalive.config.loader import config_path, load_config, parse_config

_FROM_LOADER = ("config_path", "load_config", "parse_config")

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


def __getattr__(name: str) -> object:
    if name in _FROM_LOADER:
        from natkeepalive.config import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
