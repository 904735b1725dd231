"""User errors of every command line, in one place: which exceptions are the user's to fix, and how they end.

Every command line of the project (``stfpm ...``, ``python -m stfpm_lib.batch``, ``python -m
stfpm_lib.data``) reports a user error the same way: one line ``<prog>: error: <message>`` on
stderr and exit status 2, without a traceback; Ctrl-C is exit status 130 with one line.
:func:`user_errors` lists the exception classes (raised by every layer for bad input: a config
value, a missing dataset, unusable weights, a damaged checkpoint, a full disk ...) and
:func:`guarded` applies the rule around a command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["EXIT_USAGE", "EXIT_INTERRUPTED", "BatchError", "UsageError", "user_errors", "guarded"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BatchError(ValueError):
    """Bad input to the notebook runner (unknown parameter, category, notebook, run dir...)."""


class UsageError(ValueError):
    """A command-line argument that cannot be used (named in the message)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a command reports as ``error: ...`` with exit status 2.

    Returns
    -------
    tuple of type
        The library's bad-input errors of every layer, plus ``FileNotFoundError`` and
        ``NotImplementedError``.
    """
    # lazy: the classes live in layers that load torch; --help and usage errors must not wait for it
    from ..config import ConfigError
    from ..data.mvtec import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.training import TrainError
    from ..io import OutputError, UnsafeNameError
    from ..method.weights import WeightsError
    from ..metrics import UndefinedMetricError
    from ..records.evaluation import EvaluationError, MetricsFileError, PerImageFileError
    from ..records.predictions import PredictionsError
    from ..reporting.published import PublishedDataError
    from ..reporting.study_tables import StudyResultsError
    from ..reporting.tables import ReportError
    from .executors import ExecutorError

    return (UsageError, BatchError, ConfigError, DataError, WeightsError, CheckpointError, TrainError,
            PredictionsError, EvaluationError, MetricsFileError, PerImageFileError, OutputError, UnsafeNameError,
            UndefinedMetricError,
            ReportError, StudyResultsError, PublishedDataError, ExecutorError, FileNotFoundError, NotImplementedError)


def guarded(prog: str, command: Callable[[], int], *, interrupted: str = "interrupted") -> int:
    """Run ``command()`` and turn a user error into one line on stderr and exit status 2.

    Parameters
    ----------
    prog : str
        The program name that opens the message, e.g. ``"stfpm train"``.
    command : callable
        The command, returning its exit status.
    interrupted : str, default="interrupted"
        What to print after ``prog:`` on Ctrl-C (exit status 130).

    Returns
    -------
    int
        ``command()``'s status, 2 for a user error, 130 when interrupted.
    """
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, user_errors()):
            print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_USAGE
        raise
