"""Reading Prometheus' text exposition format back in tests (samples only, no timestamps)."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Key = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Key, float]:
    samples: dict[Key, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(
            (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for k, v in _LABEL.findall(labels or "")
        )
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def label_sets(samples: dict[Key, float], name: str) -> list[dict[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]
