"""Issue #32: a rank that raises or dies ends a torchrun run on every rank, well within
``--dist-timeout``, with messages naming the rank.

``torchrun --nproc_per_node=2`` runs ``corekit.cli train`` through a small entry script
that makes rank 1 fail at its third training step: raise an error, or SIGKILL itself. The
failing rank that can still speak names itself (``deepclust: rank 1 of 2 stopped: ...``), the
rank left waiting says its collective with the others failed, and torchrun's summary names
rank 1 as the root cause. Each run takes about 15 s on the 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMEOUT_S = 20  # --dist-timeout: a run that waited for it would take longer than SECONDS
SECONDS = 90  # startup (imports, data, composing) included

ENTRY = '''
import os, signal, sys

from corekit import cli
from corekit.engine.trainer import StageTrainer

original, calls = StageTrainer.train_batch, []


def failing(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3 and os.environ["RANK"] == "1":
        if os.environ["FAULT"] == "raise":
            raise RuntimeError("injected fault")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)


StageTrainer.train_batch = failing
sys.exit(cli.main(sys.argv[1:]))
'''

torchrun = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not torchrun.exists() and shutil.which("torchrun") is None,
                                reason="no torchrun")


def _run(fault: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "FAULT": fault}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(entry), "train", "cc",
           "--data", "digits", "--dist-timeout", f"{TIMEOUT_S}s", "--no-progress",
           "--set", "train.epochs=2", "--set", "data.subset=256", "--set", "train.batch_size=64",
           "--out", str(tmp_path / "run")]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=SECONDS * 2)
    return done, time.perf_counter() - start


def _root_cause(stderr: str) -> str:
    return stderr.split("Root Cause", 1)[1][:300]


@pytest.mark.parametrize("fault", ["raise", "kill"])
def test_a_failing_rank_ends_the_run_on_every_rank_and_is_named(fault: str,
                                                                tmp_path: Path) -> None:
    done, seconds = _run(fault, tmp_path)
    assert done.returncode != 0
    assert seconds < SECONDS, f"took {seconds:.0f} s"
    assert "rank      : 1 (local_rank: 1)" in _root_cause(done.stderr), done.stderr[-3000:]
    if fault == "raise":
        assert "deepclust: rank 1 of 2 stopped: RuntimeError: injected fault" in done.stderr
    else:
        assert "deepclust: rank 0 of 2 stopped: a collective with the other processes" \
            in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run" / "final.json").exists()
