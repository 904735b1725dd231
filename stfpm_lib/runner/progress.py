"""Progress a person can see: each running job's step and epoch, written by its kernel, shown by the runner.

A notebook's kernel cannot print to the runner's terminal (its output goes to ``<category>/<nb>.log``).
So the runner gives each job a small file (``<job folder>/.progress.json``, named by ``$STFPM_PROGRESS_FILE``
in the kernel's environment); the kernel's helpers write what they are doing into it
(:func:`report_progress`: the training epoch and loss, the figures drawn), and the runner's
:class:`ProgressMonitor` reads the files of the running jobs once a second. On a terminal it shows one
live line per running job (tqdm); in a log (CI, a file) it prints a plain line when a job starts a step
and at each quarter of its epochs, with no carriage returns.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..io import atomic_write_text

__all__ = ["PROGRESS_ENV", "PROGRESS_NAME", "report_progress", "read_progress", "describe", "ProgressMonitor"]

PROGRESS_ENV = "STFPM_PROGRESS_FILE"
PROGRESS_NAME = ".progress.json"


def report_progress(**fields: Any) -> None:
    """Write ``fields`` (e.g. ``step``, ``epoch``, ``epochs``, ``loss``, ``eta_s``) to ``$STFPM_PROGRESS_FILE``.

    Does nothing outside the runner (the variable is not set), and never fails the work it reports on.

    Parameters
    ----------
    **fields
        JSON-serialisable values.
    """
    path = os.environ.get(PROGRESS_ENV, "")
    if not path:
        return
    try:
        atomic_write_text(Path(path), json.dumps({**fields, "time": time.time()}, default=str))
    except OSError:  # progress is a courtesy: a full or read-only disk fails the real writes, not this one
        pass


def read_progress(path: str | os.PathLike) -> dict[str, Any] | None:
    """The last progress record written to ``path``, or ``None`` (none yet, or caught mid-replace).

    Parameters
    ----------
    path : str or os.PathLike
        A progress file.

    Returns
    -------
    dict or None
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def describe(name: str, record: dict[str, Any] | None) -> str:
    """One line for a job's progress record.

    Parameters
    ----------
    name : str
        The job's name (category, or study job).
    record : dict or None
        What :func:`read_progress` returned.

    Returns
    -------
    str
        E.g. ``bottle 02_train: epoch 5/20, loss 0.01234, ETA 0:32`` or ``(run) 05_figures: 40/130 figures``.

    Examples
    --------
    >>> describe("bottle", {"step": "02_train", "epoch": 5, "epochs": 20, "loss": 0.0123456, "eta_s": 32})
    'bottle 02_train: epoch 5/20, loss 0.01235, ETA 0:32'
    >>> describe("(run)", {"step": "05_figures", "done": 40, "total": 130})
    '(run) 05_figures: 40/130 figures'
    """
    if not record:
        return f"{name}: starting"
    text = f"{name} {record.get('step', '')}".rstrip() + ":"
    if "epoch" in record:
        text += f" epoch {record['epoch']}/{record.get('epochs', '?')}"
        if record.get("loss") is not None:
            text += f", loss {float(record['loss']):.4g}"
        if record.get("eta_s") is not None:
            text += f", ETA {_clock(float(record['eta_s']))}"
    elif "done" in record:
        text += f" {record['done']}/{record.get('total', '?')} figures"
    else:
        text += " running"
    return text


class ProgressMonitor:
    """Shows the progress records of running jobs while the jobs run (a context manager; a background thread).

    Parameters
    ----------
    jobs : sequence of (str, Path)
        Each job's name and the progress file its kernel writes.
    enabled : bool, default=True
        ``False`` shows nothing (``--no-progress``).
    stream : text stream, optional
        Where to show it (default ``sys.stdout``).
    interval : float, default=1.0
        Seconds between two looks at the files.
    live : bool, optional
        One live tqdm line per running job (default: when ``stream`` is a terminal); otherwise plain lines.
    """

    def __init__(self, jobs: Sequence[tuple[str, Path]], *, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = 1.0, live: bool | None = None) -> None:
        self.jobs = [(name, Path(path)) for name, path in jobs]
        self.enabled = enabled and bool(self.jobs)
        self.stream = stream or sys.stdout
        self.interval = interval
        self.live = self.stream.isatty() if live is None else live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bars: dict[str, Any] = {}
        self._shown: dict[str, tuple] = {}
        self._start = time.time()

    def __enter__(self) -> ProgressMonitor:
        if self.enabled:
            for _, path in self.jobs:
                path.unlink(missing_ok=True)  # a killed earlier run's record is not this run's progress
            self._thread = threading.Thread(target=self._loop, name="stfpm-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.poll()
        for bar in self._bars.values():
            bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Look at every job's file once and update what is shown."""
        if not self.enabled:
            return
        for name, path in self.jobs:
            record = read_progress(path)
            if record is None:  # not started, or finished (the job removes its file)
                bar = self._bars.pop(name, None)
                if bar is not None:
                    bar.close()
            elif record.get("time", 0) >= self._start:
                self._show(name, record)

    def _milestone(self, record: dict[str, Any]) -> tuple:
        """What must change for a plain line to be printed: the step, and the quarter of the epochs or figures."""
        done, total = record.get("epoch", record.get("done")), record.get("epochs", record.get("total"))
        quarter = int(4 * done / total) if isinstance(done, int) and isinstance(total, int) and total else None
        return record.get("step"), quarter

    def _show(self, name: str, record: dict[str, Any]) -> None:
        if self.live:
            from tqdm import tqdm  # lazy: only on a terminal

            bar = self._bars.get(name)
            if bar is None:
                bar = self._bars[name] = tqdm(total=0, bar_format="{desc}", file=self.stream, leave=False,
                                              position=len(self._bars) + 1)
            bar.set_description_str(describe(name, record))
            return
        milestone = self._milestone(record)
        if self._shown.get(name) != milestone:
            self._shown[name] = milestone
            print(describe(name, record), file=self.stream, flush=True)
