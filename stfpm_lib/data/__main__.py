"""``python -m stfpm_lib.data``: an alias of ``stfpm data`` (see :mod:`stfpm_lib.runner.data_commands`).

An entry point, not a library module: it may call the front door above the data layer.
"""

import sys

from ..runner.data_commands import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
