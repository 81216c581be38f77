"""natkeepalive.record against the real dataclasses; the import budget it exists for (the
daemon must not import dataclasses: docs/performance.md has the figure)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import subprocess
import sys

# `ClassVar` and `typing` are also what the real dataclasses look up in this module to recognise
# the string annotations "ClassVar[int]" and "typing.ClassVar[int]" built below.
import typing  # noqa: F401
from pathlib import Path
from typing import Any, Callable, ClassVar

import pytest
from hypothesis import given, settings, strategies as st

import natkeepalive
from natkeepalive import events as ev, record
from natkeepalive.config import model

NAMES = ("a", "b", "c", "self", "key", "other")  # a few clash with names the generated code uses
KINDS = ("required", "default", "factory", "classvar", "typing-classvar")
Spec = list[tuple[str, str, int]]  # (name, kind, value)


def specs() -> st.SearchStrategy[Spec]:
    return st.lists(
        st.tuples(st.sampled_from(NAMES), st.sampled_from(KINDS), st.integers(-2, 2)),
        max_size=5,
        unique_by=lambda item: item[0],
    )


def _factory(value: int) -> Callable[[], object]:
    # A list makes the instance unhashable: both implementations must fail alike then.
    return (lambda: (value,)) if value % 2 == 0 else (lambda: [value])


def build(spec: Spec, flavour: str, base: type | None = None) -> type:
    """One class from `spec`, decorated by the real dataclasses or by record."""
    module: Any = dataclasses if flavour == "dataclasses" else record
    name = "Base" if base is None else "Child"
    annotations: dict[str, str] = {}
    namespace: dict[str, object] = {
        "__module__": __name__,
        "__qualname__": name,
        "__annotations__": annotations,
    }
    for field, kind, value in spec:
        if kind == "required":
            annotations[field] = "int"
        elif kind == "default":
            annotations[field] = "int"
            namespace[field] = value
        elif kind == "factory":
            annotations[field] = "object"
            namespace[field] = module.field(default_factory=_factory(value))
        else:
            annotations[field] = "ClassVar[int]" if kind == "classvar" else "typing.ClassVar[int]"
            namespace[field] = value
    cls = type(name, () if base is None else (base,), namespace)
    made: type = module.dataclass(frozen=True)(cls)
    return made


def outcome(action: Callable[[], object]) -> tuple[str, str]:
    """What an action did, comparable across the two implementations."""
    try:
        return "ok", repr(action())
    except Exception as exc:  # the type and message are what is compared
        return type(exc).__name__, str(exc)


def pair(base_spec: Spec, child_spec: Spec | None) -> tuple[type, type] | tuple[str, str]:
    """(dataclasses class, record class), or the definition error both raised."""
    made: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for flavour in ("dataclasses", "record"):
        try:
            cls = build(base_spec, flavour)
            made[flavour] = cls if child_spec is None else build(child_spec, flavour, cls)
        except Exception as exc:
            errors[flavour] = type(exc).__name__
    assert set(errors) in (set(), {"dataclasses", "record"}), errors
    if errors:
        assert errors["dataclasses"] == errors["record"] == "TypeError"
        return "error", errors["record"]
    return made["dataclasses"], made["record"]


@settings(max_examples=400, deadline=None)
@given(base_spec=specs(), child_spec=st.none() | specs(), data=st.data())
def test_record_behaves_like_dataclasses(
    base_spec: Spec, child_spec: Spec | None, data: st.DataObject
) -> None:
    classes = pair(base_spec, child_spec)
    if classes[0] == "error":
        return
    real, mine = classes
    assert isinstance(real, type) and isinstance(mine, type)
    names = tuple(f.name for f in dataclasses.fields(real))
    assert record.field_names(mine) == names
    # Class attributes: plain defaults stay, default_factory ones go.
    for name in names:
        assert (name in vars(mine)) == (name in vars(real))
        assert outcome(lambda n=name: getattr(mine, n)) == outcome(lambda n=name: getattr(real, n))

    missing = dataclasses.MISSING
    defaults = {
        f.name
        for f in dataclasses.fields(real)
        if f.default is not missing or f.default_factory is not missing
    }
    values = {name: data.draw(st.integers(-3, 3), label=name) for name in names}
    passed = [
        name
        for name in names
        if name not in defaults or data.draw(st.booleans(), label=f"pass {name}")
    ]
    prefix = 0  # positional arguments can only fill fields from the first one on, without gaps
    while prefix < len(passed) and passed[prefix] == names[prefix]:
        prefix += 1
    positional = data.draw(st.integers(0, prefix), label="positional")
    args = [values[name] for name in passed[:positional]]
    kwargs = {name: values[name] for name in passed[positional:]}

    def both(action: Callable[[type], object]) -> tuple[tuple[str, str], tuple[str, str]]:
        return outcome(lambda: action(real)), outcome(lambda: action(mine))

    made_real, made_mine = both(lambda cls: cls(*args, **kwargs))
    assert made_real == made_mine
    one_real, one_mine = real(*args, **kwargs), mine(*args, **kwargs)
    two_real, two_mine = real(**values), mine(**values)
    assert repr(one_mine) == repr(one_real)
    assert (one_mine == mine(*args, **kwargs)) is (one_real == real(*args, **kwargs)) is True
    assert (one_mine == two_mine) is (one_real == two_real)
    assert (one_mine != two_mine) is (one_real != two_real)
    assert one_mine != one_real and one_real != one_mine  # other classes never compare equal
    assert outcome(lambda: hash(one_mine)) == outcome(lambda: hash(one_real))

    # Bad calls: missing, unexpected, duplicate and surplus arguments, with the same messages.
    required = [name for name in names if name not in defaults]
    bad_calls: list[tuple[list[int], dict[str, int]]] = [
        ([], {**values, "zz_extra": 1}),  # unexpected
        ([values[names[0]]] if names else [1], dict(values)),  # duplicate (or surplus)
        ([*values.values(), 9], {}),  # surplus
    ]
    if required:  # missing
        bad_calls.append(([], {name: v for name, v in values.items() if name != required[-1]}))
    for bad_args, bad_kwargs in bad_calls:
        result_real, result_mine = both(lambda cls, a=bad_args, k=bad_kwargs: cls(*a, **k))
        assert result_real[0] == "TypeError"
        assert result_mine == result_real

    # Frozen: every assignment and deletion fails the same way.
    for name in (*names, "not_a_field"):
        for act in (lambda obj, n=name: setattr(obj, n, 5), lambda obj, n=name: delattr(obj, n)):
            result_real = outcome(lambda a=act: a(two_real))
            result_mine = outcome(lambda a=act: a(two_mine))
            assert result_real[0] == "FrozenInstanceError"
            assert result_mine == result_real

    # replace(): same values, same errors.
    changes = {name: values[name] + 10 for name in names if data.draw(st.booleans(), label=name)}
    assert outcome(lambda: record.replace(two_mine, **changes)) == outcome(
        lambda: dataclasses.replace(two_real, **changes)
    )
    assert outcome(lambda: record.replace(two_mine, zz_extra=1)) == outcome(
        lambda: dataclasses.replace(two_real, zz_extra=1)
    )


def test_edges_match_dataclasses() -> None:
    """What the generated property test cannot reach: kept methods, recursion, subclasses."""
    outputs = []
    for module in (dataclasses, record):

        @module.dataclass(frozen=True)
        class Kept:
            items: list[object]
            tag: str = "t"

            def __repr__(self) -> str:
                return "kept"

            def __hash__(self) -> int:
                return 7

        @module.dataclass(frozen=True)
        class Looping:
            items: list[object]

        looping = Looping([])
        looping.items.append(looping)

        class Plain(Looping):  # not decorated: may grow attributes of its own, like any class
            pass

        plain = Plain([])
        plain.extra = 1  # type: ignore[attr-defined]
        outputs.append(
            (
                repr(Kept([])),
                hash(Kept([])),
                repr(looping),
                vars(plain),
                outcome(lambda p=plain: setattr(p, "items", 2)),
            )
        )
    assert outputs[0] == outputs[1]
    with pytest.raises(record.FrozenInstanceError):
        looping.items = []
    assert issubclass(record.FrozenInstanceError, AttributeError)


def test_refuses_what_it_does_not_support() -> None:
    with pytest.raises(TypeError):
        record.dataclass()
    with pytest.raises(TypeError):
        record.dataclass(frozen=False)
    with pytest.raises(TypeError):
        record.field_names(object())
    with pytest.raises(TypeError):
        record.replace(object())  # type: ignore[type-var]
    with pytest.raises(ValueError, match="mutable default"):
        record.dataclass(frozen=True)(
            type("Bad", (), {"__annotations__": {"x": "list[int]"}, "x": []})
        )
    with pytest.raises(TypeError, match="no type annotation"):
        record.dataclass(frozen=True)(type("Bad", (), {"x": record.field(default_factory=list)}))
    with pytest.raises(TypeError, match="Cannot overwrite attribute __setattr__"):
        record.dataclass(frozen=True)(type("Bad", (), {"__setattr__": lambda *a: None}))


def test_a_real_classvar_object_is_not_a_field() -> None:
    # Annotations are strings in this project; an evaluated one must still be recognised.
    cls = record.dataclass(frozen=True)(
        type(
            "Evaluated",
            (),
            {
                "__annotations__": {"NAME": ClassVar[str], "BARE": ClassVar, "value": int},
                "NAME": "n",
                "BARE": 1,
            },
        )
    )
    assert record.field_names(cls) == ("value",)
    assert cls(2).NAME == "n"


# --- the agent's own classes ----------------------------------------------------------------------


def declared_fields(cls: type) -> tuple[str, ...]:
    """Field names as the decorated class bodies declare them: base first, ClassVar left out.

    Like dataclasses, annotations of undecorated bases (sip.message._Headers) declare nothing.
    """
    declared: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__record_names__" not in vars(klass):
            continue
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if annotation.startswith(("ClassVar", "typing.ClassVar")):
                declared.pop(name, None)
            else:
                declared[name] = annotation
    return tuple(declared)


MODEL_CLASSES = (
    model.Target,
    model.ProbeSettings,
    model.BindingConfig,
    model.LogConfig,
    model.HooksConfig,
    model.Config,
)


@pytest.mark.parametrize(
    "cls", [ev.Event, *ev.ALL_EVENTS.values(), *MODEL_CLASSES], ids=lambda cls: cls.__name__
)
def test_field_names_follow_the_annotations(cls: type) -> None:
    names = record.field_names(cls)
    assert names == declared_fields(cls)
    assert not dataclasses.is_dataclass(cls)  # the run-time class is a record, not a dataclass


def test_event_items_follow_the_fields() -> None:
    event = ev.BindingChanged(
        **{name: f"v{i}" for i, name in enumerate(record.field_names(ev.BindingChanged))}
    )
    assert [key for key, _ in event.items()] == list(record.field_names(ev.BindingChanged))
    assert ev.Event().items() == ()


def test_config_defaults_are_fresh_per_instance() -> None:
    one, two = model.Config(), model.Config()
    assert one == two and one.log == model.LogConfig() and one.defaults == model.ProbeSettings()
    assert "log" not in vars(model.Config)  # a default_factory field keeps no class attribute
    assert model.Config.status_file == model.DEFAULT_STATUS_FILE  # a plain default does
    assert record.replace(one, user="nobody").user == "nobody"


# --- the import budget --------------------------------------------------------------------------

# The long-running agent's modules. The daemon and the run path join once the YAML loader has
# left them (it still imports typing and dataclasses: it runs in a short-lived process).
AGENT_MODULES = (
    "natkeepalive.events",
    "natkeepalive.sip.message",
    "natkeepalive.sip.request",
    "natkeepalive.core.engine",
    "natkeepalive.core.schedule",
    "natkeepalive.core.probes",
    "natkeepalive.core.discovery",
    "natkeepalive.core.lifetime",
    "natkeepalive.config.model",
    "natkeepalive.runtime.slot",
    "natkeepalive.runtime.auto",
    "natkeepalive.runtime.logsink",
    "natkeepalive.runtime.status",
    "natkeepalive.runtime.sockets",
    "natkeepalive.runtime.hooks",
    "natkeepalive.runtime.notify",
)
HEAVY = ("typing", "dataclasses", "inspect", "ast", "dis", "tokenize")

# Runs in the child. A finder at the front of sys.meta_path sees every import first: for a heavy
# module it notes the direct importer and the agent line that led there, then lets it go on.
_PROBE = """
import sys
sys.path[:0] = {path!r}
HEAVY = {heavy!r}
already = [name for name in HEAVY if name in sys.modules]
culprits = {{}}

def _where(frame):
    return "%s:%d" % (frame.f_globals.get("__name__", "?"), frame.f_lineno)

class Watch:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in HEAVY and name not in culprits:
            frame, direct, agent = sys._getframe(1), None, None
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if direct is None and not module.startswith(("importlib", "_frozen_importlib")):
                    direct = _where(frame)
                if module.startswith("natkeepalive"):
                    agent = _where(frame)
                    break
                frame = frame.f_back
            culprits[name] = "imported by %s (agent line %s)" % (direct, agent)
        return None

sys.meta_path.insert(0, Watch)
for module in {modules!r}:
    __import__(module)
loaded = {{name: culprits.get(name, "?") for name in HEAVY if name in sys.modules}}
print(repr((already, loaded)))
"""


def heavy_imports(
    modules: tuple[str, ...], extra_path: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, str]]:
    """(heavy modules loaded before ours, {heavy module: who imported it}) in a fresh interpreter.

    -I -S: no site, no .pth files and no PYTHON* variables. A .pth hook of the environment (this
    one has a certifi hook that imports typing) would load a heavy module before the agent and so
    hide the agent's own imports; a router's python has none of them.
    """
    agent = str(Path(natkeepalive.__file__).resolve().parent.parent)
    code = _PROBE.format(path=[agent, *extra_path], heavy=HEAVY, modules=modules)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: tuple[list[str], dict[str, str]] = ast.literal_eval(done.stdout.strip())
    return result


def test_agent_modules_import_no_heavy_module() -> None:
    already, loaded = heavy_imports(AGENT_MODULES)
    assert already == [], f"the bare interpreter already has {already}: the check cannot judge"
    assert loaded == {}, "\n".join(f"{name}: {who}" for name, who in loaded.items())


def test_the_import_check_names_the_culprit(tmp_path: Path) -> None:
    # The check is only worth something if it notices, and says where.
    (tmp_path / "natkeepalive_culprit.py").write_text(
        "import natkeepalive.events\nfrom typing import Any\nimport dataclasses\n"
    )
    _, loaded = heavy_imports(("natkeepalive_culprit",), (str(tmp_path),))
    assert set(loaded) >= {"typing", "dataclasses", "inspect"}
    assert loaded["typing"] == (
        "imported by natkeepalive_culprit:2 (agent line natkeepalive_culprit:2)"
    )
    assert loaded["inspect"].startswith("imported by dataclasses:")
    assert loaded["inspect"].endswith("(agent line natkeepalive_culprit:3)")


def test_every_record_class_of_the_agent_matches_its_annotations() -> None:
    checked = 0
    for name in AGENT_MODULES:
        for value in vars(importlib.import_module(name)).values():
            if (
                isinstance(value, type)
                and value.__module__ == name
                and "__record_names__" in vars(value)
            ):
                assert record.field_names(value) == declared_fields(value), value
                checked += 1
    assert checked > len(ev.ALL_EVENTS)


def test_fields_in_slots_are_set_without_a_dict() -> None:
    """__init__ stores straight into the instance's __dict__ (records are made for every
    keepalive); a class whose instances keep fields in slots gets object.__setattr__ instead."""

    class Slotted:
        __slots__ = ("a", "b")

    @record.dataclass(frozen=True)
    class Plain:
        a: int
        b: str = "x"

    @record.dataclass(frozen=True)
    class InSlots(Slotted):
        a: int
        b: str

    plain, slotted = Plain(1), InSlots(1, "x")
    assert vars(plain) == {"a": 1, "b": "x"}
    # a value stored in the __dict__ would hide behind the slot's descriptor: read back here
    assert (slotted.a, slotted.b) == (1, "x") and "a" not in vars(slotted)
    for instance in (plain, slotted):
        with pytest.raises(record.FrozenInstanceError):
            instance.a = 2
    assert InSlots(1, "x") == slotted and repr(slotted).endswith("InSlots(a=1, b='x')")
