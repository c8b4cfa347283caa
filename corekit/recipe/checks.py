"""Value checks kept beside what they check: a numeric ``Range`` on a schema field (``ranged``),
a ``Matches`` pattern on a string field (``checked``), and the checks of the option rules
(``corekit.recipe.option_rules``). Each check raises a ``RecipeError`` naming the key path and
what was expected: ``train.optimizer.lr: -0.1 is out of range; expected 0 < value <= 10``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from corekit.errors import RecipeError

CHECK = "check"
"""The attrs metadata key of a field's check; ``build`` runs it on every value given."""
BIG = 1e9
"""The upper end of ranges that have no natural one (counts, sizes, widths)."""


class Check(Protocol):
    """Raises a ``RecipeError`` that names ``path`` when ``value`` does not pass."""

    def check(self, value: Any, path: str) -> None: ...


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


@attrs.frozen
class Range:
    """``low <= value <= high`` (``low < value`` where ``open_low``); NaN is never inside.
    Lists and tables are checked item by item (the error names the index or key); values that
    are not numbers are left to the type checks."""

    low: float
    high: float
    open_low: bool = False

    def expected(self) -> str:
        """The range as the error message writes it: ``0 < value <= 10``."""
        return f"{_show(self.low)} {'<' if self.open_low else '<='} value <= {_show(self.high)}"

    def contains(self, value: float) -> bool:
        """Whether the number ``value`` lies in the range."""
        above = self.low < value if self.open_low else self.low <= value
        return above and value <= self.high and not math.isnan(value)

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self.check(item, f"{path}[{i}]")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.check(item, f"{path}.{key}")
        elif _is_number(value) and not self.contains(value):
            raise RecipeError(f"{path}: {value!r} is out of range; expected {self.expected()}")


@attrs.frozen
class Interval:
    """A ``[lo, hi]`` pair of numbers with ``low < lo <= hi <= high`` (``crop_scale``)."""

    low: float
    high: float

    def check(self, value: Any, path: str) -> None:
        pair = isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
        if not (pair and self.low < value[0] <= value[1] <= self.high):
            raise RecipeError(f"{path}: {value!r} is out of range; expected [lo, hi] with "
                              f"{_show(self.low)} < lo <= hi <= {_show(self.high)}")


@attrs.frozen
class Matches:
    """A string that fully matches ``pattern`` (``train.device``); ``hint`` says what to write."""

    pattern: re.Pattern[str]
    what: str
    hint: str

    def check(self, value: Any, path: str) -> None:
        if not self.pattern.fullmatch(str(value)):
            raise RecipeError(f"{path}: {value!r} is not {self.what}; {self.hint}")


def ranged(default: Any, low: float, high: float, *, open_low: bool = False) -> Any:
    """An attrs field with ``default`` whose given values must lie in ``Range(low, high,
    open_low)`` (``None`` is not checked); ``attrs.Factory`` defaults work too."""
    return checked(default, Range(low, high, open_low))


def checked(default: Any, check: Check) -> Any:
    """An attrs field with ``default`` whose given values ``build`` runs through ``check``."""
    return attrs.field(default=default, metadata={CHECK: check})


def field_check(field: attrs.Attribute[Any]) -> Check | None:
    """The check a schema field carries, if any."""
    return field.metadata.get(CHECK)
