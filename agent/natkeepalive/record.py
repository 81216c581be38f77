"""The part of `dataclasses` the long-running agent uses, without its import cost.

`import dataclasses` pulls in inspect, ast, dis and tokenize (docs/performance.md has what they
cost). The agent only needs frozen classes with an `__init__`, `__repr__`, `__eq__` and
`__hash__`, so this module builds exactly those: `__init__` from generated source as
`dataclasses` does (the same errors; it stores into `__dict__` directly, which is faster), the
other three shared by all classes.

Modules take their decorator from here in one line:

    from natkeepalive.record import dataclass, field

Type checkers see `dataclasses`' own names re-exported (under TYPE_CHECKING, below), so mypy
keeps checking the classes as real frozen dataclasses. Supported: `dataclass(frozen=True)`,
`field(default_factory=...)`, `replace()`, and `field_names()` in place of `dataclasses.fields()`.
Annotations are strings (`from __future__ import annotations` everywhere); `ClassVar` ones are not
fields. Imports nothing but C modules, because any import here is paid by every process.
"""

from __future__ import annotations

# _thread itself, not through cstdlib: the sans-I/O core imports this module, and cstdlib
# also holds _socket and _signal
import _thread
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    _T = TypeVar("_T")

__all__ = ["FrozenInstanceError", "dataclass", "field", "field_names", "replace"]

# On each class {name: default}: _MISSING, a value, a _Factory, or _CLASSVAR for a ClassVar, which
# holds its place there (as in dataclasses) so that a subclass turning it into a field keeps it.
_FIELDS = "__record_fields__"
_NAMES = "__record_names__"  # the same names as a tuple, for field_names() on hot paths


class FrozenInstanceError(AttributeError):
    """Raised on assigning to or deleting a field of a frozen record."""


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_MISSING = _Sentinel("<missing>")
_HAS_FACTORY = _Sentinel("<factory>")  # shown in help(); the parameter default for factory fields
_CLASSVAR = _Sentinel("<classvar>")


class _Factory:
    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], object]) -> None:
        self.factory = factory


def _field(*, default_factory: Callable[[], _T]) -> _T:
    """A field whose default is made per instance, like `dataclasses.field(default_factory=...)`."""
    return _Factory(default_factory)  # type: ignore[return-value]


def _dataclass(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]:
    """`dataclasses.dataclass(frozen=True)`; anything but frozen is refused, not quietly changed."""
    if frozen is not True:
        raise TypeError("natkeepalive.record supports only dataclass(frozen=True)")
    return _process


def field_names(obj_or_cls: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in `dataclasses.fields()` order."""
    names: tuple[str, ...] | None = getattr(obj_or_cls, _NAMES, None)
    if names is None:
        raise TypeError("field_names() should be called on a record class or instance")
    return names


def _replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of `obj` with some fields changed, like `dataclasses.replace`."""
    names: tuple[str, ...] | None = getattr(type(obj), _NAMES, None)
    if names is None:
        raise TypeError("replace() should be called on record instances")
    for name in names:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        text = annotation.strip()
        if text.startswith("typing."):
            text = text[7:].lstrip()
        return text == "ClassVar" or text.startswith("ClassVar[")
    typing = sys.modules.get("typing")  # a real ClassVar object means typing is loaded already
    return typing is not None and getattr(annotation, "__origin__", annotation) is typing.ClassVar


def _own_annotations(cls: type) -> dict[str, object]:
    own: dict[str, object] | None = cls.__dict__.get("__annotations__")  # noqa: RUF063
    if own is None and sys.version_info >= (3, 10):
        # Later versions may keep them behind a descriptor; from 3.10 on it never reads a base's.
        own = cls.__annotations__
    return own or {}


def _collect(cls: type) -> dict[str, object]:
    fields: dict[str, object] = {}
    for base in cls.__mro__[-1:0:-1]:  # base fields first; a redeclared name keeps its place
        inherited = getattr(base, _FIELDS, None)
        if inherited is not None:
            fields.update(inherited)
    annotations = _own_annotations(cls)
    for name, annotation in annotations.items():
        if _is_classvar(annotation):
            fields[name] = _CLASSVAR
            continue
        default = getattr(cls, name, _MISSING)  # dataclasses also takes an inherited class value
        if isinstance(default, _Factory):
            if name in cls.__dict__:
                delattr(cls, name)
        elif default is not _MISSING and type(default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(default)} for field {name} is not allowed:"
                " use default_factory"
            )
        fields[name] = default
    for name, value in cls.__dict__.items():
        if isinstance(value, _Factory) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    seen_default = ""
    for name, default in fields.items():
        if default is _CLASSVAR:
            continue
        if default is not _MISSING:
            seen_default = seen_default or name
        elif seen_default:
            raise TypeError(
                f"non-default argument {name!r} follows default argument {seen_default!r}"
            )
    return fields


def _compile(
    cls: type, name: str, args: str, body: list[str], env: dict[str, object]
) -> Callable[..., Any]:
    """One method from source, its closure holding `env`; dataclasses builds them the same way."""
    inner = "\n".join(f"  {line}" for line in body)
    text = f"def __create_fn__({', '.join(env)}):\n def {name}({args}):\n{inner}\n return {name}"
    scope: dict[str, Any] = {}
    exec(text, {"__builtins__": __builtins__}, scope)
    fn: Callable[..., Any] = scope["__create_fn__"](**env)
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    fn.__module__ = cls.__module__
    return fn


def _init(cls: type, fields: dict[str, object]) -> Callable[..., None]:
    self_name = "__record_self__" if "self" in fields else "self"
    env: dict[str, object] = {
        "__record_setattr__": object.__setattr__,
        "__record_has_factory__": _HAS_FACTORY,
    }
    params = [self_name]
    stores: list[tuple[str, str]] = []  # (field, the expression its value comes from)
    for name, default in fields.items():
        value = name
        if default is _CLASSVAR:
            continue
        if default is _MISSING:
            params.append(name)
        elif isinstance(default, _Factory):
            env[f"__record_factory_{name}__"] = default.factory
            params.append(f"{name}=__record_has_factory__")
            value = f"__record_factory_{name}__() if {name} is __record_has_factory__ else {name}"
        else:
            env[f"__record_default_{name}__"] = default
            params.append(f"{name}=__record_default_{name}__")
        stores.append((name, value))
    if not any("__slots__" in vars(base) for base in cls.__mro__[:-1]):
        # The fields live in the instance's __dict__: stored there directly, each is cheaper
        # than through object.__setattr__ (what dataclasses generates), and records are made
        # for every keepalive and answer (Datagram, TransactionKey, Via, Response).
        body = [f"__record_dict__ = {self_name}.__dict__"] if stores else []
        body += [f"__record_dict__[{name!r}] = {value}" for name, value in stores]
    else:
        body = [f"__record_setattr__({self_name}, {name!r}, {value})" for name, value in stores]
    return _compile(cls, "__init__", ", ".join(params), body or ["pass"], env)


# __repr__, __eq__ and __hash__ are shared by every record class, reading the field names from
# the instance's class: generated per class (as dataclasses does) they would take memory for
# every one of the agent's classes, and only __init__ is on a hot path.
_repr_running: set[tuple[int, int]] = set()


def _values(obj: object) -> tuple[object, ...]:
    return tuple([getattr(obj, name) for name in getattr(type(obj), _NAMES)])


def _record_repr(self: object) -> str:
    key = (id(self), _thread.get_ident())
    if key in _repr_running:  # a record holding itself, as dataclasses' reprlib guard does
        return "..."
    _repr_running.add(key)
    try:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in getattr(type(self), _NAMES))
        return f"{self.__class__.__qualname__}({shown})"
    finally:
        _repr_running.discard(key)


def _record_eq(self: object, other: object) -> object:
    if other.__class__ is self.__class__:
        return _values(self) == _values(other)
    return NotImplemented


def _record_hash(self: object) -> int:
    return hash(_values(self))


def _frozen(cls: type, names: tuple[str, ...]) -> None:
    for name in ("__setattr__", "__delattr__"):
        if name in cls.__dict__:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    field_set = frozenset(names)

    def __setattr__(self: object, name: str, value: object) -> None:
        if type(self) is cls or name in field_set:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)  # type: ignore[arg-type]  # mypy: dynamic class

    def __delattr__(self: object, name: str) -> None:
        if type(self) is cls or name in field_set:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)  # type: ignore[arg-type]

    for fn in (__setattr__, __delattr__):
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)


def _process(cls: type[_T]) -> type[_T]:
    own = cls.__dict__  # a live view: read what the class body wrote before adding to it
    class_hash = own.get("__hash__", _MISSING)
    # An __eq__ in the body sets __hash__ to None implicitly; that one is not the author's choice.
    explicit_hash = not (class_hash is _MISSING or (class_hash is None and "__eq__" in own))
    fields = _collect(cls)
    names = tuple(name for name, default in fields.items() if default is not _CLASSVAR)
    setattr(cls, _FIELDS, fields)
    setattr(cls, _NAMES, names)
    methods: dict[str, Callable[[], Callable[..., Any]]] = {
        "__init__": lambda: _init(cls, fields),
        "__repr__": lambda: _record_repr,
        "__eq__": lambda: _record_eq,
    }
    for name, make in methods.items():
        if name not in own:  # like dataclasses: a method the class body wrote is kept
            setattr(cls, name, make())
    if not explicit_hash:
        setattr(cls, "__hash__", _record_hash)  # noqa: B010
    _frozen(cls, names)
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass, field, replace
else:
    dataclass, field, replace = _dataclass, _field, _replace
