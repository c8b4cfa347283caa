"""IDFD's learning-rate steps as fractions of the stage length."""

from __future__ import annotations

import attrs

IDFD_FRACTIONS = (0.3, 0.475, 0.65, 0.825)
"""The IDFD code's milestones 600/950/1300/1650 of 2000 epochs as fractions."""


def _increasing_fractions(instance: object, attribute: attrs.Attribute,
                          value: tuple[float, ...]) -> None:
    pairs = zip(value, value[1:], strict=False)
    if any(not 0 <= f <= 1 for f in value) or any(b <= a for a, b in pairs):
        raise ValueError(f"{attribute.name} must be increasing fractions in [0, 1], "
                         f"got {list(value)}")


@attrs.frozen(kw_only=True)
class FractionalMultiStep:
    """``factor = gamma ** |{f ∈ fractions : f · epochs ≤ e}|`` at fractional epoch
    ``e = step / steps_per_epoch`` (1-based ``step``), so the decay points follow the stage's
    ``train.epochs`` (a CPU preset with 12 epochs decays at 3.6, 5.7, 7.8 and 9.9). With
    2000 epochs it is the core's ``multistep`` with milestones [600, 950, 1300, 1650].
    Registered as ``idfd_multistep``."""

    steps_per_epoch: int = attrs.field(validator=attrs.validators.ge(1))
    epochs: int = attrs.field(validator=attrs.validators.ge(0))
    fractions: tuple[float, ...] = attrs.field(default=IDFD_FRACTIONS, converter=tuple,
                                               validator=_increasing_fractions)
    gamma: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))

    def factor(self, step: int) -> float:
        e = step / self.steps_per_epoch
        return self.gamma ** sum(1 for f in self.fractions if f * self.epochs <= e)
