"""Rules on option names. A component's options are free-form (checked against its factory's
signature when the stage is composed), but some names mean one thing wherever they appear:
this table gives each its range, and ``build`` checks every options table against it, with the
same message as a field range: ``losses.cc.temperature: -0.5 is out of range; expected
0 < value <= 1e+09``."""

from __future__ import annotations

import re
from typing import Any

import attrs

from corekit.recipe.checks import BIG, Check, Interval, Range
from corekit.recipe.schema import Component, Head


@attrs.frozen
class OptionRule:
    """Options whose name fully matches ``names``, in the options of a ``where`` class (of
    every class with options where ``where`` is empty), must pass ``check``."""

    names: re.Pattern[str]
    check: Check
    where: tuple[type, ...] = ()

    def applies(self, cls: type, key: str) -> bool:
        """Whether the rule covers option ``key`` of a ``cls`` table."""
        return (not self.where or cls in self.where) and bool(self.names.fullmatch(key))


OPTION_RULES: tuple[OptionRule, ...] = (
    # softmax temperatures: losses.cc.temperature, cidfd's tau_x, any *_temperature
    OptionRule(re.compile(r"temperature|\w+_temperature|tau|tau_\w+"),
               Range(0, BIG, open_low=True)),
    # probabilities: flip_p, jitter_p, gray_p, blur_p, solarize_p, p
    OptionRule(re.compile(r"p|\w+_p"), Range(0, 1)),
    # angles in degrees, drawn from U(-x, x)
    OptionRule(re.compile(r"rotate|shear"), Range(0, 180)),
    # the area fraction a random crop keeps, and its aspect ratios
    OptionRule(re.compile(r"crop_scale"), Interval(0, 1)),
    OptionRule(re.compile(r"crop_ratio"), Interval(0, BIG)),
    # the colour jitter's strength (its four factors scale with it)
    OptionRule(re.compile(r"strength"), Range(0, BIG)),
    # restarts of k-means (each a full run: 10^12 of them never end)
    OptionRule(re.compile(r"n_init|\w+_n_init"), Range(1, 1000)),
    # layer widths of encoders (model.backbone, model.encoders.*) and heads
    OptionRule(re.compile(r"width|hidden|dim|\w+_dim"), Range(1, BIG), (Component, Head)),
)
"""Every rule on option names, checked in one place (``check_option``)."""


def check_option(cls: type, key: str, value: Any, path: str) -> None:
    """Run every rule that applies to option ``key`` of a ``cls`` table on ``value``; a
    ``None`` value (the factory's default) is not checked."""
    if value is None:
        return
    for rule in OPTION_RULES:
        if rule.applies(cls, key):
            rule.check.check(value, path)
