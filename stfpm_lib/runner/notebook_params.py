"""The runner's ``-p KEY VALUE`` parameters: typed like papermill, checked against the notebooks and the config.

``-p`` is the one override syntax of every command (papermill's): ``STFPMConfig`` fields are typed by
:func:`stfpm_lib.config.parse_field`, other notebook parameters by :func:`parse_value`. Keys no
notebook accepts, keys the runner sets itself and invalid config values fail before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import CONFIG_FIELDS, ConfigError, STFPMConfig, parse_field
from .errors import BatchError
from .notebook_specs import RUNNER_KEYS, NotebookSpec
from .notebook_steps import config_overrides  # the notebooks' own reading: the config they will build

__all__ = ["parse_value", "parse_overrides", "validate_overrides", "resolve_categories"]


def parse_value(text: str) -> Any:
    """Parse a ``-p`` value like papermill: ``True``/``False``/``None``, int, float, else the string.

    ``true``/``false``/``none`` (any case) are accepted too.

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    Any
        bool, None, int, float or the string.
    """
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_overrides(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``[["epochs", "2"], ...]`` -> ``{"epochs": 2}``; a key given twice is an error.

    ``STFPMConfig`` fields are typed by :func:`stfpm_lib.config.parse_field` (``-p loss_half no``
    is ``False``; ``-p epochs abc`` raises ``ConfigError`` naming ``epochs``); other notebook
    parameters by :func:`parse_value`.

    Parameters
    ----------
    pairs : sequence of (str, str), optional
        ``-p KEY VALUE`` pairs.

    Returns
    -------
    dict of str to Any
        Typed parameters.
    """
    values: dict[str, Any] = {}
    for key, text in pairs or ():
        if key in values:
            raise BatchError(f"parameter {key!r} given twice with -p")
        values[key] = parse_field(key, text) if key in CONFIG_FIELDS else parse_value(text)
    return values


def validate_overrides(specs: Sequence[NotebookSpec], preset: str, overrides: Mapping[str, Any]) -> STFPMConfig | None:
    """Check every override key against the notebooks and the config; return the config (or None).

    Each key must be accepted by at least one of the notebooks (declared in its parameters cell,
    or an ``STFPMConfig`` field for a notebook that declares ``preset``). Keys the runner sets
    itself are refused. The config values are validated by building the config.

    Parameters
    ----------
    specs : sequence of NotebookSpec
        The notebooks to run.
    preset : str
        Config preset.
    overrides : mapping of str to Any
        ``-p`` parameters.

    Returns
    -------
    STFPMConfig or None
        The config (``None`` when no notebook takes one).
    """
    for key in overrides:
        if key in RUNNER_KEYS:
            flag = {"category": "--categories", "data_root": "--data-root", "force": "--force"}.get(
                key, "--run-name/--results-dir")
            raise BatchError(f"parameter {key!r} is set by the runner; use {flag} instead of -p {key}")
        if key == "preset":
            raise BatchError("use --preset instead of -p preset")
        if not any(spec.accepts(key) for spec in specs):
            known = sorted({name for spec in specs for name in spec.parameters} - set(RUNNER_KEYS))
            config_note = f"; STFPMConfig fields: {list(CONFIG_FIELDS)}" if any(s.takes_config for s in specs) else ""
            names = ", ".join(spec.path.name for spec in specs)
            raise BatchError(f"unknown notebook parameter {key!r} for {names}; parameters: {known}{config_note}")
    if not any(spec.takes_config for spec in specs):
        return None
    try:
        return STFPMConfig.from_preset(preset, **config_overrides(overrides))
    except (ConfigError, TypeError) as exc:
        raise BatchError(f"invalid configuration: {exc}") from exc


def resolve_categories(data_root: Path, spec: str | Sequence[str]) -> list[str]:
    """``"all"`` -> every category of ``data_root``; ``"a,b"`` -> checked against those found.

    Parameters
    ----------
    data_root : Path
        Dataset root.
    spec : str or sequence of str
        ``"all"``, comma-separated names, or a list of them.

    Returns
    -------
    list of str
        The categories.
    """
    from ..data.mvtec import list_categories  # lazy: the data layer loads torch; -p errors answer at once

    found = list_categories(data_root)
    if not found:
        raise BatchError(f"data root {data_root} contains no category (no <category>/train/good directory)")
    names = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if not names or names == ["all"]:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise BatchError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} under {data_root}; found: {found}")
    return list(dict.fromkeys(names))

