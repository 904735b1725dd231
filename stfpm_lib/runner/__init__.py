"""Entry points: ``papermill_runner`` (notebooks over categories, ``python -m stfpm_lib.batch``),
``notebook_steps`` (the helpers the notebooks call) and ``cli`` (the ``stfpm`` console script)."""
