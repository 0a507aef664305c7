"""Declarative settings: each setting is one dataclass field that carries its own facts.

A field made with :func:`setting` holds its default, a help text, its allowed choices or
numeric range, whether it may change at run time, and optionally a custom check.  From
those facts, and nowhere else, come:

- validation (:func:`problems`): choices and ranges, with messages that name the setting
  and what it allows; only rules that tie two settings together are written by hand;
- building from mappings (:func:`build`): unknown keys and wrong types named, values
  coerced as YAML and ROS hand them over;
- the run-time set (:func:`runtime_names`), the ROS parameter descriptors
  (``mlmp_ros.ros.params``), the CLI's settings list and the documented parameter file
  ``config/segment.yaml`` (``mlmp_ros.ros.paramfile``).

Adding a setting is adding one field (see docs/development/extending.md).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING
from typing import Any, Union, get_args, get_origin, get_type_hints

KEY = "mlmp"  # the dataclass field metadata key that holds a Meta

# Run-time levels: who applies a change while running.
SEGMENTER = "segmenter"  # Segmenter.update (classes, mode, steps, lr)
SCHEDULE = "schedule"  # ScheduledSegmenter.update (schedules, budgets, safeguards)
NODE = "node"  # the ROS node's own settings


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric interval, written as in mathematics: ``"[0, 1)"``, ``"(0, inf)"``, ``"[1, inf)"``."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Range:
        m = re.fullmatch(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*", text)
        if not m:
            raise ValueError(f"a range is written like '[0, 1)' or '(0, inf)', not {text!r}")
        return cls(float(m[2]), float(m[3]), m[1] == "(", m[4] == ")")

    def __contains__(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    @property
    def finite(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self) -> str:
        """``>= 0``, ``> 0`` for an interval open to infinity, else ``in [0, 1)``."""
        if math.isinf(self.high) and self.high_open:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        return f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclasses.dataclass(frozen=True)
class Meta:
    """What a setting is, besides its type and default."""

    help: str
    choices: tuple[Any, ...] | None = None
    range: Range | None = None
    runtime: str | None = None  # SEGMENTER, SCHEDULE, NODE or None (fixed once started)
    check: Callable[[Any], str | None] | None = None  # a problem with the value, or None
    parse: Callable[[Any], Any] | None = None  # applied to the raw value before type coercion
    name: str | None = None  # the full dotted name where it differs from the field path


def setting(
    default: Any = MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    range: str | None = None,
    runtime: str | bool | None = None,
    check: Callable[[Any], str | None] | None = None,
    parse: Callable[[Any], Any] | None = None,
    name: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with its schema facts (lists and dataclasses: give ``factory``)."""
    meta = Meta(
        help=help,
        choices=tuple(choices) if choices is not None else None,
        range=Range.parse(range) if range is not None else None,
        runtime=NODE if runtime is True else (runtime or None),
        check=check,
        parse=parse,
        name=name,
    )
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={KEY: meta})
    return dataclasses.field(default=default, metadata={KEY: meta})


def like(cls: type, name: str, **defaults: Any) -> Any:
    """A field declared exactly as ``cls``'s field ``name`` (same help, rules, default unless given).

    For a file format that repeats another object's settings (a suite file's batch_size, seeds, ...
    are :class:`mlmp_ros.bench.offline.options.RunOptions`'), so they are declared once.
    """
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    if "default" in defaults:
        return dataclasses.field(default=defaults["default"], metadata=f.metadata)
    if f.default_factory is not MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def group(cls: type) -> Any:
    """A nested group of settings (a dataclass field whose type is a settings dataclass)."""
    return dataclasses.field(default_factory=cls)


# ----------------------------------------------------------------- walking
@dataclasses.dataclass(frozen=True)
class Setting:
    """One leaf setting of a schema, found by :func:`settings`."""

    name: str  # dotted, e.g. adaptation.safeguards.reliable_e0
    path: tuple[str, ...]  # field names from the root, e.g. ("adaptation", "safeguards", "reliable_e0")
    type: Any
    default: Any
    meta: Meta

    def value(self, obj: Any) -> Any:
        for part in self.path:
            obj = getattr(obj, part)
        return obj


def meta_of(f: dataclasses.Field) -> Meta | None:
    return f.metadata.get(KEY)


def settings(cls: type, prefix: str = "", path: tuple[str, ...] = ()) -> Iterator[Setting]:
    """Every leaf setting of a settings dataclass, nested groups included, in field order."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from settings(hint, f"{prefix}{f.name}.", (*path, f.name))
            continue
        meta = meta_of(f)
        if meta is None:
            continue  # not a setting (e.g. a bookkeeping field)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        yield Setting(meta.name or f"{prefix}{f.name}", (*path, f.name), hint, default, meta)


def runtime_names(cls: type, *levels: str) -> tuple[str, ...]:
    """Dotted names of the settings that change at run time at the given levels (all if none)."""
    return tuple(s.name for s in settings(cls) if s.meta.runtime and (not levels or s.meta.runtime in levels))


# -------------------------------------------------------------- validation
def value_problem(name: str, value: Any, meta: Meta) -> str | None:
    """The problem with one value by its declared choices, range and check, or None (None: unset, fine)."""
    if value is None:
        return None
    if meta.choices is not None and value not in meta.choices:
        return f"{name} must be one of {', '.join(map(str, meta.choices))}, not '{value}'"
    if meta.range is not None and value not in meta.range:
        return f"{name} must be {meta.range.text()}, not {value}"
    if meta.check is not None:
        problem = meta.check(value)
        if problem:
            return f"{name} {problem}"
    return None


def check_value(cls: type, name: str, value: Any) -> str | None:
    """The problem with ``value`` for the setting ``name`` (dotted) of ``cls``, or None."""
    (s,) = [s for s in settings(cls) if s.name == name]
    return type_problem(name, value, s.type) or value_problem(name, value, s.meta)


def problems(obj: Any, *, types: bool = False) -> list[str]:
    """Every declared-rule problem of a settings object (nested groups included).

    ``types``: also check each value's type (for objects built in Python, not by :func:`build`).
    """
    out = []
    for s in settings(type(obj)):
        value = s.value(obj)
        problem = type_problem(s.name, value, s.type) if types else None
        problem = problem or value_problem(s.name, value, s.meta)
        if problem:
            out.append(problem)
    return out


def type_problem(name: str, value: Any, hint: Any) -> str | None:
    """``name`` is not of its declared type (numbers: NumPy's count; ints: never bools), or None."""
    origin, args = get_origin(hint), [a for a in get_args(hint) if a is not type(None)]
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and len(args) < len(get_args(hint)):
            return None
        (hint,) = args
    wanted = {bool: (bool,), int: (numbers.Integral,), float: (numbers.Real,), str: (str,)}.get(hint)
    if wanted is None:
        return None
    if not isinstance(value, wanted) or (hint is not bool and isinstance(value, bool)):
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]
        return f"{name} must be {kind}, not {value!r}"
    return None


# ---------------------------------------------------------------- building
def build(cls: type, data: Mapping[str, Any], problems: list[str], *, prefix: str = "",
          ignore: Sequence[str] = (), unknown: str = "setting") -> Any:
    """An instance of ``cls`` from a nested mapping; unknown keys and wrong types go to ``problems``.

    Fields the mapping does not name keep their defaults; rules are not checked here
    (call :func:`problems` or the class's own validation on the result).
    """
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not prefix and key in ignore:
            continue
        if key not in fields:
            problems.append(f"unknown {unknown} '{prefix}{key}' (known: {', '.join(sorted(fields))})")
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                problems.append(f"'{prefix}{key}' must be a mapping")
                continue
            kwargs[key] = build(hint, value, problems, prefix=f"{prefix}{key}.", unknown=unknown)
            continue
        meta = meta_of(fields[key])
        if meta is not None and meta.parse is not None:
            value = meta.parse(value)
        try:
            kwargs[key] = coerce(value, hint)
        except (TypeError, ValueError) as exc:
            problems.append(f"'{meta.name if meta is not None and meta.name else prefix + key}': {exc}")
    return cls(**kwargs)


def _int_text(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise TypeError(f"expected integers, got {text.strip()!r}") from None


def coerce(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` (bool, int, float, str, list[...], optional), or TypeError."""
    origin = get_origin(hint)
    if origin is tuple and len(get_args(hint)) == 2 and get_args(hint)[1] is Ellipsis:
        return tuple(coerce(value, list[get_args(hint)[0]]))  # tuple[int, ...]: as a list of them
    if origin is list:
        (item,) = get_args(hint)
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return []  # "auto": the method's default
        if isinstance(value, str) and item in (int, float):
            value = [v for v in value.split(",") if v.strip()]  # "-1,-2,-3"
            value = [float(v) if item is float else _int_text(v) for v in value]
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [coerce(v, item) for v in value]
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(get_args(hint)):
            return None
        if len(args) == 1:
            return coerce(value, args[0])
        raise TypeError("unsupported union type")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TypeError(f"expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise TypeError(f"expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    return value


# ---------------------------------------------------------- documentation
def describe(s: Setting) -> str:
    """The help text with its choices, range and run-time flag, as parameter descriptions show it."""
    text = s.meta.help
    if s.meta.choices is not None:
        text += f" ({' | '.join(map(str, s.meta.choices))})"
    elif s.meta.range is not None:
        text += f" ({s.meta.range.text()})"
    if s.meta.runtime:
        text += " [run time]"
    return text


def settings_table(cls: type, shown: Mapping[str, Any] | None = None) -> str:
    """A plain-text list of every setting, its default and description (``mlmp-bench settings``).

    ``shown``: setting name -> the default to print instead of the declared value (e.g. 'auto' where an
    empty list means the method's own choice, as the parameter file writes it)."""
    shown = shown or {}
    rows = [(s.name, _show(shown.get(s.name, s.default)), describe(s)) for s in settings(cls)]
    width = max(len(n) for n, _, _ in rows)
    dwidth = min(max(len(d) for _, d, _ in rows), 24)
    return "\n".join(f"{n:<{width}}  {d:<{dwidth}}  {h}" for n, d, h in rows)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    return str(value)
