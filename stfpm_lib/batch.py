"""``python -m stfpm_lib.batch``: the notebook runner's command line, kept at its old address.

The runner lives in :mod:`stfpm_lib.runner.papermill_runner`; this module only starts it (``main``
is that module's, so worker processes and pickles see one set of classes).
"""

import sys

from .runner.papermill_runner import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
