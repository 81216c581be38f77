"""A validated configuration as plain data (dicts, tuples, str, numbers, None) and back, so it
can cross a process boundary through `marshal` (built in: no import cost) without the loader.

Only what the loader produced is ever decoded: the bytes come from our own child process.
"""

from __future__ import annotations

from natkeepalive.config.model import (
    BindingConfig,
    Config,
    HooksConfig,
    LogConfig,
    ProbeSettings,
    Target,
)
from natkeepalive.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_CLASSES: dict[str, Callable[..., object]] = {
    cls.__name__: cls
    for cls in (Config, BindingConfig, Target, ProbeSettings, LogConfig, HooksConfig)
}
_KIND = ""  # a key no field can have: marks a dict as one model object


def to_plain(value: object) -> Any:  # marshal-able: dict, tuple, str, int, float, None
    if type(value).__name__ in _CLASSES:
        plain: dict[str, object] = {_KIND: type(value).__name__}
        for name, item in vars(value).items():
            plain[name] = to_plain(item)
        return plain
    if isinstance(value, tuple):
        return tuple(to_plain(item) for item in value)
    return value


def _build(value: object, made: dict[tuple[object, ...], object]) -> object:
    if isinstance(value, dict):
        fields = {k: _build(v, made) for k, v in value.items() if k != _KIND}
        # Equal settings (most bindings inherit `defaults:` unchanged) become one shared frozen
        # object, not one per binding.
        key = (value[_KIND], *((k, type(v), v) for k, v in fields.items()))  # 20 != 20.0 here
        try:
            return made[key]
        except KeyError:
            built = made[key] = _CLASSES[value[_KIND]](**fields)
            return built
        except TypeError:  # an unhashable field: not shared
            return _CLASSES[value[_KIND]](**fields)
    if isinstance(value, tuple):
        return tuple(_build(item, made) for item in value)
    return value


def from_plain(value: object) -> Config:
    config = _build(value, {})
    if not isinstance(config, Config):
        raise TypeError(f"not a configuration: {type(config).__name__}")
    return config


def error_to_plain(exc: ConfigError) -> tuple[str, str, int | None, str]:
    return (exc.message, exc.file, exc.line, exc.key)


def error_from_plain(value: tuple[str, str, int | None, str]) -> ConfigError:
    message, file, line, key = value
    return ConfigError(message, file=file, line=line, key=key)
