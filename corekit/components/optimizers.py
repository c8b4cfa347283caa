"""Built-in optimizers and the parameter groups the core hands them.

``param_groups`` splits the trainable parameters by lr multiplier and weight decay; each
optimizer factory is called as ``factory(groups, lr=..., weight_decay=..., **options)`` and
keeps every group's ``lr`` as given (the engine rescales ``group["lr"]`` each step by the
schedule's factor times that group's base lr).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import ParamsT

from corekit.recipe.schema import NoDecay

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
"""Normalisation layers (BatchNorm and InstanceNorm, LayerNorm, GroupNorm): their weights and
biases are what ``no_decay = "norm"`` exempts."""


def exempt_from_decay(model: nn.Module, rule: NoDecay) -> set[str]:
    """The names of ``model``'s parameters that ``rule`` keeps from weight decay: ``"none"``
    none; ``"norm"`` those of normalisation layers (``NORM_LAYERS``), conv and linear biases
    decayed, as the FixMatch stage of SPICE's code does (Niu et al. 2022, arXiv 2103.09382);
    ``"norm_bias"`` every 1-d tensor (``ndim ≤ 1``: biases and norm scales), as BYOL does
    (Grill et al. 2020, arXiv 2006.07733)."""
    if rule == "norm_bias":
        return {name for name, param in model.named_parameters() if param.ndim <= 1}
    if rule == "norm":
        return {f"{prefix}.{name}" if prefix else name
                for prefix, layer in model.named_modules() if isinstance(layer, NORM_LAYERS)
                for name, _ in layer.named_parameters(recurse=False)}
    return set()


def param_groups(model: nn.Module, lr: float, weight_decay: float, lr_mult: dict[str, float],
                 no_decay: NoDecay = "none") -> list[dict[str, Any]]:
    """One group per (lr multiplier, decayed or not), in order of first appearance.

    A parameter named ``name`` gets ``lr · lr_mult[p]`` for the first prefix ``p`` of
    ``lr_mult`` with ``name.startswith(p)``, else ``lr``. The parameters that ``no_decay``
    exempts (``exempt_from_decay``) get ``weight_decay = 0`` and ``lars_exclude = True`` (no
    LARS trust ratio). Frozen parameters (``requires_grad`` False) are left out. Each group is
    ``{"params", "lr", "weight_decay"}`` plus ``"lars_exclude"`` where set.
    """
    named = list(model.named_parameters())
    for prefix in lr_mult:
        if not any(name.startswith(prefix) for name, _ in named):
            raise ValueError(f"lr_mult.{prefix}: no parameter starts with it "
                             "(names look like 'heads.pred.0.weight')")
    exempt = exempt_from_decay(model, no_decay)
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, param in named:
        if not param.requires_grad:
            continue
        mult = next((m for p, m in lr_mult.items() if name.startswith(p)), 1.0)
        exclude = name in exempt
        if (mult, exclude) not in groups:
            group: dict[str, Any] = {"params": [], "lr": lr * mult,
                                     "weight_decay": 0.0 if exclude else weight_decay}
            if exclude:
                group["lars_exclude"] = True
            groups[mult, exclude] = group
        groups[mult, exclude]["params"].append(param)
    if not groups:
        raise ValueError("no trainable parameter: every parameter is frozen (see train.freeze)")
    return list(groups.values())


def sgd(params: ParamsT, lr: float, weight_decay: float = 0.0, *, momentum: float = 0.9,
        nesterov: bool = False) -> torch.optim.SGD:
    """SGD with heavy-ball (or Nesterov) momentum, ``torch.optim.SGD``."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov)


def _betas(betas: Sequence[float]) -> tuple[float, float]:
    if len(betas) != 2:
        raise ValueError(f"betas must be two numbers (β1, β2), got {list(betas)}")
    return float(betas[0]), float(betas[1])


def adam(params: ParamsT, lr: float, weight_decay: float = 0.0, *,
         betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient."""
    return torch.optim.Adam(params, lr=lr, betas=_betas(betas), eps=eps,
                            weight_decay=weight_decay)


def adamw(params: ParamsT, lr: float, weight_decay: float = 0.0, *,
          betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, betas=_betas(betas), eps=eps,
                             weight_decay=weight_decay)


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017, Algorithm 1), per parameter tensor w:

        λ = η · ‖w‖ / (‖∇w‖ + β‖w‖ + eps)          (local lr; η = trust_coefficient, β = wd)
        v ← m · v + γ · λ · (∇w + β w)              (γ = the group's lr, m = momentum)
        w ← w − v

    ``λ = 1`` where ``‖w‖ = 0`` or ``‖∇w‖ = 0`` (the ratio is degenerate there: a zero-initialised
    layer would never move). Groups with ``lars_exclude`` (the parameters that
    ``train.optimizer.no_decay`` exempts, see ``param_groups``) skip the trust ratio and the
    decay: ``v ← m · v + γ ∇w``, plain heavy-ball momentum SGD.
    """

    def __init__(self, params: ParamsT, lr: float, weight_decay: float = 0.0, *,
                 momentum: float = 0.9, trust_coefficient: float = 0.001,
                 eps: float = 1e-8) -> None:
        for name, value, ok, rule in (
            ("lr", lr, lr >= 0, ">= 0"),
            ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
            ("momentum", momentum, 0 <= momentum < 1, "in [0, 1)"),
            ("trust_coefficient", trust_coefficient, trust_coefficient > 0, "> 0"),
            ("eps", eps, eps >= 0, ">= 0"),
        ):
            if not ok:
                raise ValueError(f"LARS {name} must be {rule}, got {value!r}")
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "trust_coefficient": trust_coefficient, "eps": eps, "lars_exclude": False}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter with a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                update = grad if group["lars_exclude"] else _trusted(param, grad, group)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update, alpha=group["lr"])
                param.sub_(buf)
        return loss


def _trusted(param: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
    """``λ · (∇w + β w)`` of LARS, with the local lr ``λ`` kept on the device (no sync)."""
    decay = group["weight_decay"]
    w_norm = torch.linalg.vector_norm(param)
    g_norm = torch.linalg.vector_norm(grad)
    ratio = group["trust_coefficient"] * w_norm / (g_norm + decay * w_norm + group["eps"])
    ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
    return grad.add(param, alpha=decay).mul_(ratio)
