"""Warnings as the command line shows them: one line each, ``deepclust: warning: MESSAGE``,
once per message. Python's own format shows the toolkit's source file and line and the line of
code that warned (``.../corekit/data/__init__.py:51: DataWarning: ...`` then ``return
load_imagefolder(root)``), and a data set loaded twice in one command (the ``auto`` preset
looks at the images, then the run loads them) would warn twice."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block each warning shown is one line on stderr, a message said before is
    not said again; the earlier ``warnings.showwarning`` is restored after."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"deepclust: warning: {text}", file=file or sys.stderr, flush=True)

    earlier = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = earlier
