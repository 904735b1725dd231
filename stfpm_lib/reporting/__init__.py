"""Turning runs into tables and figures: ``tables`` (run -> CSV / Markdown / LaTeX beside the published
numbers), ``published`` (the paper's numbers, data in ``published/`` with sources), ``figures`` (matplotlib)."""
