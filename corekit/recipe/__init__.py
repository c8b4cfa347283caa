"""Recipes: TOML files validated into attrs classes.

A recipe names components; the composer builds them. Sections: ``data``, ``model``,
``augment``, ``losses``, ``clusterer``, ``memory_bank``, ``train``, ``eval``. A multi-stage
method lists ``[[stage]]`` tables; each stage is a partial recipe merged over the top-level
sections. ``extends = "other"`` starts from another recipe; ``[presets.<dataset>]`` holds
per-dataset settings picked by ``--data``; ``[vars]`` holds values used as ``"${NAME}"``;
``--set a.b=value`` overrides any key. Unknown keys are errors that name the key's path and
the nearest valid keys.

One module per job:

- ``schema``: the attrs classes, each numeric field with its range (``checks.ranged``);
- ``checks``: ``Range`` and the other value checks; ``option_rules``: ranges by option name;
- ``conversion``: ``convert`` a value to an annotation, ``build`` a class from a table;
- ``tables``: ``merge`` and the ``--set`` overrides; ``variables``: ``[vars]``;
- ``validation``: ``validate`` a merged raw recipe; ``resolving``: from a name to a ``Recipe``;
- ``durations``: ``parse_budget``; ``render``: ``to_toml``.
"""

from corekit.errors import RecipeError
from corekit.recipe.conversion import build, convert, unwrap_optional
from corekit.recipe.durations import parse_budget
from corekit.recipe.render import to_toml
from corekit.recipe.resolving import dataset_key, load_toml, resolve, resolve_raw, select_data
from corekit.recipe.schema import (
    COMPONENT_CLASSES,
    Augment,
    Clusterer,
    Component,
    Data,
    Eval,
    FixedMemoryFormat,
    FixedPrecision,
    Head,
    Loss,
    MemoryBank,
    MemoryFormat,
    Model,
    Optimizer,
    Precision,
    PseudoLabeler,
    Raw,
    Recipe,
    Sampler,
    Schedule,
    Stage,
    State,
    Stream,
    Target,
    Train,
    View,
)
from corekit.recipe.tables import apply_override, merge, parse_override, stage_name
from corekit.recipe.validation import META_KEYS, validate

__all__ = [
    "COMPONENT_CLASSES", "META_KEYS", "Augment", "Clusterer", "Component", "Data", "Eval",
    "FixedMemoryFormat", "FixedPrecision", "Head", "Loss", "MemoryBank", "MemoryFormat", "Model",
    "Optimizer", "Precision", "PseudoLabeler", "Raw", "Recipe", "RecipeError", "Sampler",
    "Schedule", "Stage", "Stream",
    "State", "Target", "Train", "View", "apply_override", "build", "convert", "dataset_key",
    "load_toml", "merge", "parse_budget", "parse_override", "resolve", "resolve_raw",
    "select_data", "stage_name", "to_toml", "unwrap_optional", "validate",
]
