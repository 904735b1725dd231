"""Entry points: ``cli`` (the front door, ``stfpm <command>``), the notebook runner behind it (``papermill_runner``
and its parts), the study runner, and ``notebook_steps`` (the helpers the notebooks call)."""
