"""Named training state: ``[state.NAME] type = ...`` tables, several per stage.

A state type is a registry kind (``register_state_types``). Its factory returns an
``nn.Module`` (so it is checkpointed with the run and resumes exactly) that may implement any
lifecycle hook (``corekit.lifecycle``) and ``needs()``. Losses read state by name:
``step.state("bank_w")``. The core's types: ``ema`` (a target branch), ``memory_bank``
(index-keyed), ``queue`` (FIFO), ``pseudo_labels`` (the E-step's buffer), ``targets`` (the rows a
dataset-level labeler writes) and ``selection`` (one head of a stacked part, selected without
labels).
"""

from corekit.state.base import State, check_state
from corekit.state.ema import EMA
from corekit.state.memory_bank import MemoryBank
from corekit.state.pseudo_labels import PseudoLabels
from corekit.state.queue import Queue
from corekit.state.selection import Selection, information, snapshot_network
from corekit.state.targets import BatchTargets, LabelRows, Targets

__all__ = ["BatchTargets", "EMA", "LabelRows", "MemoryBank", "PseudoLabels", "Queue", "Selection",
           "State", "Targets", "check_state", "information", "snapshot_network"]
