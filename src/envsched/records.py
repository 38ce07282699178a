"""Frozen record classes for the resolver's cold path (#13): `dataclasses`, without its cost.

`@dataclass` execs generated source for every method of every class it decorates, and importing
`dataclasses` pulls in `inspect` (with `ast`, `dis`, `tokenize`): together ≈ 10 ms of every
resolver run for the policy model's and the decision's twenty-odd classes. The decorator here
builds the same methods from closures instead (nothing is compiled) and imports nothing:

  @dataclass / @dataclass(frozen=True)   __init__ (positional or keyword, defaults, factories),
                                         __repr__, __eq__, __hash__ (frozen: by value; else None),
                                         and, frozen, FrozenInstanceError on assignment
  field(default=..., default_factory=...)
  asdict, replace, fields, is_dataclass  as dataclasses' own (asdict recurses into records,
                                         lists, tuples and dicts)

The classes stay dataclasses to the standard library too: `__dataclass_fields__` holds Field
objects that `dataclasses.replace`, `fields`, `asdict` and `is_dataclass` accept (tests use them).
Only the options the code uses exist: no order, slots, kw_only, InitVar or ClassVar.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Tuple


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record (as dataclasses.FrozenInstanceError)."""


class Field:
    """One field, as dataclasses.Field has it (the attributes its functions read)."""
    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare",
                 "metadata", "kw_only")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name: str = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = True
        self.repr = True
        self.hash = None
        self.compare = True
        self.metadata: Dict[str, Any] = {}
        self.kw_only = False

    @property
    def _field_type(self) -> Any:
        """What dataclasses' own functions check a field by (only they read it: they are loaded)."""
        import dataclasses
        return dataclasses._FIELD            # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Field(name={self.name!r},type={self.type!r},default={self.default!r}," \
               f"default_factory={self.default_factory!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    return Field(default, default_factory)


def dataclass(cls: Any = None, *, frozen: bool = False) -> Any:
    def wrap(c: Any) -> Any:
        return _process(c, frozen)
    return wrap if cls is None else wrap(cls)


def _process(cls: Any, frozen: bool) -> Any:
    fields: Dict[str, Field] = {}
    for base in cls.__mro__[-1:0:-1]:                   # inherited fields first, as dataclasses
        fields.update(getattr(base, "__dataclass_fields__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.type = name, annotation
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             f"use default_factory")
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        fields[name] = f
    names = tuple(fields)
    seen_default = False
    for f in fields.values():
        if f.default is MISSING and f.default_factory is MISSING:
            if seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
        else:
            seen_default = True
    cls.__dataclass_fields__ = fields
    cls.__match_args__ = names
    cls.__init__ = _init(cls, fields)
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr(names)
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq(names)
    if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
        cls.__hash__ = _hash(names) if frozen else None
    if frozen:
        cls.__setattr__, cls.__delattr__ = _frozen(cls, fields)
    return cls


def _init(cls: Any, fields: Dict[str, Field]) -> Callable[..., None]:
    specs = tuple((f.name, f.default, f.default_factory) for f in fields.values())
    names = frozenset(fields)
    count = len(specs)
    qualname = f"{cls.__qualname__}.__init__"

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(f"{qualname}() takes {count + 1} positional arguments but "
                            f"{len(args) + 1} were given")
        values = {}
        missing = []
        for i, (name, default, factory) in enumerate(specs):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{qualname}() got multiple values for argument {name!r}")
                values[name] = args[i]
            elif name in kwargs:
                values[name] = kwargs[name]
            elif default is not MISSING:
                values[name] = default
            elif factory is not MISSING:
                values[name] = factory()
            else:
                missing.append(name)
        if not names.issuperset(kwargs):
            unknown = next(k for k in kwargs if k not in names)
            raise TypeError(f"{qualname}() got an unexpected keyword argument {unknown!r}")
        if missing:
            raise TypeError(f"{qualname}() missing {len(missing)} required positional argument"
                            f"{'s' if len(missing) > 1 else ''}: " + ", ".join(repr(m) for m in missing))
        self.__dict__.update(values)
    __init__.__qualname__ = qualname
    return __init__


def _values(self: Any, names: Tuple[str, ...]) -> Tuple[Any, ...]:
    return tuple([getattr(self, n) for n in names])


def _repr(names: Tuple[str, ...]) -> Callable[[Any], str]:
    running = set()

    def __repr__(self: Any) -> str:
        key = id(self)
        if key in running:                                  # a record that holds itself
            return "..."
        running.add(key)
        try:
            return self.__class__.__qualname__ + "(" + ", ".join(
                f"{n}={getattr(self, n)!r}" for n in names) + ")"
        finally:
            running.discard(key)
    return __repr__


def _eq(names: Tuple[str, ...]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return _values(self, names) == _values(other, names)
        return NotImplemented
    return __eq__


def _hash(names: Tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(_values(self, names))
    return __hash__


def _frozen(cls: Any, fields: Dict[str, Field]) -> Tuple[Callable[..., None], Callable[..., None]]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in fields:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in fields:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return __setattr__, __delattr__


def is_dataclass(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(cls, "__dataclass_fields__")


def fields(obj: Any) -> Tuple[Any, ...]:
    try:
        found = obj.__dataclass_fields__
    except AttributeError:
        raise TypeError("must be called with a dataclass type or instance") from None
    return tuple(found.values())


def replace(obj: Any, **changes: Any) -> Any:
    """A copy of the record `obj` with `changes` (dataclasses.replace)."""
    if isinstance(obj, type) or not hasattr(type(obj), "__dataclass_fields__"):
        raise TypeError("replace() should be called on dataclass instances")
    for name in obj.__dataclass_fields__:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)


def asdict(obj: Any) -> Dict[str, Any]:
    """The record `obj` as a dict, records inside it too (dataclasses.asdict)."""
    if isinstance(obj, type) or not hasattr(type(obj), "__dataclass_fields__"):
        raise TypeError("asdict() should be called on dataclass instances")
    return _asdict(obj)


_ATOMS = frozenset((str, int, float, bool, type(None), bytes))


def _asdict(obj: Any) -> Any:
    cls = type(obj)
    if cls in _ATOMS:
        return obj
    if cls is dict:
        return {_asdict(k): _asdict(v) for k, v in obj.items()}
    if cls is list:
        return [_asdict(v) for v in obj]
    if hasattr(cls, "__dataclass_fields__"):
        return {n: _asdict(getattr(obj, n)) for n in obj.__dataclass_fields__}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return cls(*[_asdict(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return cls(_asdict(v) for v in obj)
    if isinstance(obj, dict):
        return cls((_asdict(k), _asdict(v)) for k, v in obj.items())
    import copy
    return copy.deepcopy(obj)
