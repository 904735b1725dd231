"""Study specs: a YAML file naming a grid of runs, parsed, validated and expanded into jobs.

A study (``studies/<name>.yaml``)::

    name: layers                 # optional (default: the file's stem); a safe folder name
    description: which feature levels matter
    preset: official             # the base STFPMConfig preset
    data_root: demo              # optional: "demo" (the embedded demo dataset) or a path (relative to
                                 # this file); the command line's --data-root comes first, $MVTEC_ROOT last
    overrides: {epochs: 100}     # STFPMConfig fields common to every variant
    parameters: {k_examples: 3}  # other notebook parameters (checked against the notebooks when run)
    variants:                    # named variants: name -> the overrides that make it
      layer123: {}
      layer12: {layers: [layer1, layer2]}
    grid:                        # and/or a cartesian product, one variant per combination,
      backbone: [resnet18, resnet34]   # named key-value joined by "__" (backbone-resnet34); with
                                 # variants too: every variant x every combination (<variant>__<combination>)
    seeds: [0, 1, 2]             # STFPMConfig.seed of each run (default [0])
    categories: all              # or a list
    notebooks: [02_train.ipynb, 03_evaluate.ipynb]   # per-category chain (default), ending in metrics.json
    baseline: layer123           # optional: the variant the others are compared with
    report: 06_ablation_layers.ipynb   # optional: a study-level notebook (parameter study_dir) run
                                 # after the jobs in the study directory: tables, figures, discussion

A job is one (variant, seed, category): :func:`expand_jobs`. Errors (:class:`StudyError`) name the
file and the key: unknown keys, override values that :func:`stfpm_lib.config.parse_field` or
:class:`~stfpm_lib.config.STFPMConfig` refuse, an empty grid, duplicate variant names or YAML keys,
names that are not safe folder names.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import CONFIG_FIELDS, ConfigError, STFPMConfig, parse_field
from ..io import UnsafeNameError, check_safe_name
from .errors import BatchError
from .notebook_specs import PIPELINE, RUNNER_KEYS

__all__ = ["StudyError", "Variant", "Study", "Job", "load_study", "narrow_study", "expand_jobs", "study_spec", "safe_name",
           "SPEC_KEYS"]

#: Top-level keys of a study file.
SPEC_KEYS = ("name", "description", "preset", "data_root", "overrides", "parameters", "variants", "grid", "seeds",
             "categories", "notebooks", "baseline", "report")
_NOT_OVERRIDES = {"seed": "use the study's 'seeds' list", "preset": "use the study's 'preset'",
                  **{k: "the runner sets it" for k in RUNNER_KEYS}}


class StudyError(BatchError):
    """A study file that cannot be run as written (message names the file and the key)."""


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its folder name and the overrides (on top of the common ones) that make it.

    Attributes
    ----------
    name : str
        Folder name of the variant.
    overrides : mapping of str to Any
        STFPMConfig fields set by the variant.
    """

    name: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class Study:
    """A parsed, validated study file (see the module docstring for the keys).

    Attributes
    ----------
    name : str
        Study name (a safe folder name).
    path : Path
        The study file.
    preset : str
        Base STFPMConfig preset.
    variants : tuple of Variant
        The grid's points.
    seeds : tuple of int
        STFPMConfig.seed of each run.
    categories : str or tuple of str
        ``"all"`` or the categories.
    notebooks : tuple of str
        Per-category notebook chain.
    overrides : mapping of str to Any
        STFPMConfig fields common to every variant.
    parameters : mapping of str to Any
        Other notebook parameters.
    baseline : str, optional
        The variant the others are compared with.
    data_root : str, optional
        ``"demo"`` or a path.
    description : str
        Free text.
    report : str, optional
        Study-level notebook run after the jobs.
    """

    name: str
    path: Path
    preset: str
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...] = (0,)
    categories: str | tuple[str, ...] = "all"
    notebooks: tuple[str, ...] = PIPELINE
    overrides: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    data_root: str | None = None
    description: str = ""
    report: str | None = None

    def variant(self, name: str) -> Variant:
        """The variant called ``name``.

        Parameters
        ----------
        name : str
            Variant name.

        Returns
        -------
        Variant
            The variant.
        """
        return next(v for v in self.variants if v.name == name)

    def config(self, variant: Variant, seed: int) -> STFPMConfig:
        """The configuration of ``variant`` trained with ``seed``.

        Parameters
        ----------
        variant : Variant
            One of the study's variants.
        seed : int
            Training seed.

        Returns
        -------
        STFPMConfig
            Preset + common overrides + the variant's overrides + seed.
        """
        return STFPMConfig.from_preset(self.preset, **{**self.overrides, **variant.overrides, "seed": seed})


@dataclass(frozen=True)
class Job:
    """One training + evaluation: (variant, seed, category) of a study.

    Attributes
    ----------
    study : Study
        The study.
    variant : Variant
        The variant.
    seed : int
        Training seed.
    category : str
        Dataset category.
    """

    study: Study
    variant: Variant
    seed: int
    category: str

    @property
    def overrides(self) -> dict[str, Any]:
        """Every override of the job's run (common, the variant's, the seed), as ``-p`` would pass them."""
        return {**self.study.overrides, **self.variant.overrides, "seed": self.seed}

    @property
    def run_subdir(self) -> Path:
        """The job's run directory, relative to the study directory: ``runs/<variant>/seed<seed>``."""
        return Path("runs") / self.variant.name / f"seed{self.seed}"

    @property
    def label(self) -> str:
        """``<variant>/seed<seed>/<category>``."""
        return f"{self.variant.name}/seed{self.seed}/{self.category}"

    @property
    def record(self) -> dict[str, Any]:
        """The ``"study"`` entry of the job's ``metrics.json``: its grid coordinates."""
        return {"study": self.study.name, "variant": self.variant.name, "overrides": dict(self.variant.overrides),
                "seed": self.seed, "category": self.category}


def safe_name(name: Any, what: str) -> str:
    """``name`` if it is a safe folder name (letters, digits, ``._+-``, starting with a letter or digit,
    at most 100 characters), else :class:`StudyError` naming ``what``.

    Parameters
    ----------
    name : Any
        The name to check.
    what : str
        Where it came from, for the message.

    Returns
    -------
    str
        ``name``.
    """
    try:
        return check_safe_name(name, what)
    except UnsafeNameError as exc:
        raise StudyError(str(exc)) from None


def _description(path: Path, value: Any) -> str:
    if value is not None and not isinstance(value, str):
        raise StudyError(f"{path}: description must be a text, got {type(value).__name__}")
    return value or ""


# ----------------------------------------------------------------------------- YAML
class _DuplicateKey(ValueError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise _DuplicateKey(f"key {key!r} given twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


#: The most nodes a study file may expand to, aliases expanded (the committed studies have under 200): a
#: "billion laughs" file of nested aliases would otherwise exhaust memory once a value is printed.
MAX_YAML_NODES = 100_000


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once every alias in it is expanded (each shared node counted once)."""
    if id(node) not in memo:
        memo[id(node)] = 0  # a recursive alias counts as empty here; the loader refuses it anyway
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        memo[id(node)] = 1 + sum(_expanded_nodes(child, memo) for child in children)
    return memo[id(node)]


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise StudyError(f"study file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader: the node graph, aliases shared
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    if root is not None and _expanded_nodes(root, {}) > MAX_YAML_NODES:
        raise StudyError(f"{path}: its YAML aliases expand to more than {MAX_YAML_NODES:,} values (nested aliases that "
                         "multiply, a 'billion laughs' file?); write the study without such aliases")
    try:
        spec = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as exc:
        raise StudyError(f"{path}: {exc} (duplicate variant names or keys)") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise StudyError(f"{path}: a study must be a mapping of {list(SPEC_KEYS)}, got {type(spec).__name__}")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {unknown}; valid keys: {list(SPEC_KEYS)}")
    return spec


# ----------------------------------------------------------------------------- validation
def _mapping(path: Path, where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{path}: {where} must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _check_overrides(path: Path, where: str, preset: str, values: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (config field -> value) typed by ``parse_field`` and checked one by one on top of ``base``."""
    checked: dict[str, Any] = {}
    for key, value in _mapping(path, where, values).items():
        if key in _NOT_OVERRIDES:
            raise StudyError(f"{path}: {where}.{key}: not an override ({_NOT_OVERRIDES[key]})")
        if key not in CONFIG_FIELDS:
            raise StudyError(f"{path}: {where}.{key}: unknown STFPMConfig field; fields: {list(CONFIG_FIELDS)} "
                             "(other notebook parameters go under 'parameters')")
        checked[key] = _normalised(path, f"{where}.{key}", preset, base, key, value)
    return checked


def _normalised(path: Path, where: str, preset: str, base: Mapping[str, Any], key: str, value: Any) -> Any:
    try:
        cfg = STFPMConfig.from_preset(preset, **{**base, key: parse_field(key, value)})
    except (ConfigError, TypeError) as exc:
        raise StudyError(f"{path}: {where}: {exc}") from None
    return cfg.to_dict()[key]


def _label(value: Any) -> str:
    """A grid value as text for a variant name: ``True`` -> ``true``, lists joined by ``+``."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "+".join(_label(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _grid_points(path: Path, preset: str, grid: Any, base: Mapping[str, Any]) -> list[Variant]:
    """One variant per combination of the ``grid`` lists, named ``key-value__key-value``."""
    axes = []
    for key, values in _mapping(path, "grid", grid).items():
        if not isinstance(values, list) or not values:
            raise StudyError(f"{path}: grid.{key} must be a non-empty list of values, got {values!r}")
        checked = _check_overrides(path, "grid", preset, {key: values[0]}, base)  # the key itself
        axis = [checked[key]] + [_normalised(path, f"grid.{key}[{i}]", preset, base, key, v)
                                 for i, v in enumerate(values[1:], 1)]
        axes.append([(key, v) for v in axis])
    points = []
    for combination in itertools.product(*axes):
        name = "__".join(f"{key}-{_label(value)}" for key, value in combination)
        safe_name(name, f"{path}: grid {dict(combination)} (use named variants for such values)")
        points.append(Variant(name, dict(combination)))
    return points


def _variants(path: Path, spec: Mapping[str, Any], preset: str, base: Mapping[str, Any]) -> tuple[Variant, ...]:
    named = [Variant(safe_name(name, f"{path}: variants.{name}"),
                     _check_overrides(path, f"variants.{name}", preset, values, base))
             for name, values in _mapping(path, "variants", spec.get("variants")).items()]
    points = _grid_points(path, preset, spec.get("grid"), base) if spec.get("grid") is not None else []
    if not named and not points:
        raise StudyError(f"{path}: empty grid: give 'variants' (name -> overrides) and/or 'grid' (key -> values)")
    if named and points:
        combined = []
        for variant, point in itertools.product(named, points):
            both = sorted(set(variant.overrides) & set(point.overrides))
            if both:
                raise StudyError(f"{path}: variants.{variant.name} and grid both set {both}")
            combined.append(Variant(safe_name(f"{variant.name}__{point.name}", f"{path}: variant"),
                                    {**variant.overrides, **point.overrides}))
        named, points = combined, []
    variants = tuple(named + points)
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise StudyError(f"{path}: duplicate variant name {variant.name!r}")
        seen.add(variant.name)
        try:
            STFPMConfig.from_preset(preset, **base, **variant.overrides)
        except (ConfigError, TypeError) as exc:
            raise StudyError(f"{path}: variants.{variant.name}: {exc}") from None
    return variants


def _seeds(path: Path, value: Any) -> tuple[int, ...]:
    if value is None:
        return (0,)
    if not isinstance(value, list) or not value:
        raise StudyError(f"{path}: seeds must be a non-empty list of integers, e.g. [0, 1, 2], got {value!r}")
    seeds = tuple(_normalised(path, f"seeds[{i}]", "official", {}, "seed", s) for i, s in enumerate(value))
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: seeds {list(seeds)} repeat a seed")
    return seeds


def _names(path: Path, key: str, value: Any, default: Sequence[str] | str) -> str | tuple[str, ...]:
    if value is None:
        return default if isinstance(default, str) else tuple(default)
    if value == "all" and key == "categories":
        return "all"
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
        raise StudyError(f"{path}: {key} must be a non-empty list of names, got {value!r}")
    if len(set(items)) != len(items):
        raise StudyError(f"{path}: {key} {items} repeat a name")
    return tuple(items)


# ----------------------------------------------------------------------------- loading, expanding
def load_study(path: str | os.PathLike) -> Study:
    """Read and validate the study file ``path`` (YAML); see the module docstring for its keys.

    Every variant's configuration is built (``STFPMConfig.from_preset``) once, so a bad value fails
    here, naming the file and the key (``variants.<name>.<field>``, ``grid.<field>[i]``...).

    Parameters
    ----------
    path : str or os.PathLike
        The study file (YAML).

    Returns
    -------
    Study
        The validated study.
    """
    path = Path(path)
    spec = _read_yaml(path)
    name = safe_name(spec.get("name", path.stem), f"{path}: name")
    preset = spec.get("preset", "official")
    try:
        STFPMConfig.from_preset(preset)
    except ConfigError as exc:
        raise StudyError(f"{path}: preset: {exc}") from None
    common = _check_overrides(path, "overrides", preset, spec.get("overrides"), {})
    variants = _variants(path, spec, preset, common)
    baseline = spec.get("baseline")
    if baseline is not None and baseline not in {v.name for v in variants}:
        raise StudyError(f"{path}: baseline {baseline!r} is not a variant; variants: {[v.name for v in variants]}")
    parameters = _mapping(path, "parameters", spec.get("parameters"))
    clash = sorted(set(parameters) & (set(CONFIG_FIELDS) | set(_NOT_OVERRIDES)))
    if clash:
        raise StudyError(f"{path}: parameters {clash} are config fields or set by the runner; "
                         "put config fields under 'overrides' or a variant")
    report = spec.get("report")
    if report is not None and not (isinstance(report, str) and report.endswith(".ipynb")):
        raise StudyError(f"{path}: report must be a notebook file name (e.g. 06_ablation_layers.ipynb), got {report!r}")
    data_root = spec.get("data_root")
    if data_root is not None and not isinstance(data_root, str):
        raise StudyError(f"{path}: data_root must be 'demo' or a path, got {data_root!r}")
    return Study(name=name, path=path, preset=preset, variants=variants, seeds=_seeds(path, spec.get("seeds")),
                 categories=_names(path, "categories", spec.get("categories"), "all"),
                 notebooks=_names(path, "notebooks", spec.get("notebooks"), PIPELINE), overrides=common,
                 parameters=dict(parameters), baseline=baseline, data_root=data_root,
                 description=_description(path, spec.get("description")), report=report)


def narrow_study(study: Study, *, params: Sequence[tuple[str, str]] = (), seeds: str | None = None,
                 categories: str | None = None, variants: str | None = None, baseline: str | None = None) -> Study:
    """``study`` as the command line adjusts it (``-p KEY VALUE``, ``--seeds``, ``--categories``, ``--variants``).

    Parameters
    ----------
    study : Study
    params : sequence of (str, str)
        Config fields added to the common overrides (a variant's own overrides still win), each value
        parsed by :func:`~stfpm_lib.config.parse_field` and checked on every variant.
    seeds, categories, variants : str, optional
        Comma-separated lists replacing the file's seeds and categories, and the variants kept.
    baseline : str, optional
        The variant to compare with; needed when ``variants`` drops the file's baseline.

    Returns
    -------
    Study
        The adjusted study; errors (:class:`StudyError`) name the command-line option.
    """
    where = Path("command line")
    common = _check_overrides(where, "-p", study.preset, dict(params), study.overrides)
    kept = study.variants
    if variants is not None:
        names = _names(where, "--variants", variants, ())
        unknown = [n for n in names if n not in {v.name for v in study.variants}]
        if unknown:
            raise StudyError(f"--variants {unknown}: not variants of {study.path}: {[v.name for v in study.variants]}")
        kept = tuple(v for v in study.variants if v.name in names)
    chosen = baseline if baseline is not None else study.baseline
    if chosen is not None and chosen not in {v.name for v in kept}:
        raise StudyError(f"baseline {chosen!r} is not among the variants {[v.name for v in kept]}: pass --baseline")
    narrowed = dataclasses.replace(
        study, overrides={**study.overrides, **common}, variants=kept, baseline=chosen,
        seeds=study.seeds if seeds is None else _seeds(where, [s.strip() for s in seeds.split(",")]),
        categories=study.categories if categories is None else _names(where, "--categories", categories, "all"))
    for variant in narrowed.variants:  # every variant still builds (e.g. crop_size <= a smaller image_size)
        try:
            narrowed.config(variant, narrowed.seeds[0])
        except (ConfigError, TypeError) as exc:
            raise StudyError(f"variant {variant.name!r} with -p {dict(params)}: {exc}") from None
    return narrowed


def expand_jobs(study: Study, categories: Sequence[str] | None = None) -> list[Job]:
    """Every (variant, seed, category) of ``study``, variant by variant, then seed, then category.

    ``categories`` (e.g. those found under the data root) replaces ``categories: all``; it is
    needed then. Names must be safe folder names.

    Parameters
    ----------
    study : Study
        The study.
    categories : sequence of str, optional
        Categories replacing ``categories: all``.

    Returns
    -------
    list of Job
        The jobs.
    """
    names = study.categories if categories is None else tuple(categories)
    if names == "all":
        raise StudyError(f"{study.path}: categories: all needs the data root's categories (pass categories)")
    for name in names:
        safe_name(name, f"{study.path}: categories")
    return [Job(study, variant, seed, category)
            for variant in study.variants for seed in study.seeds for category in names]


def study_spec(study: Study, categories: Sequence[str], notebooks: Sequence[str]) -> dict[str, Any]:
    """The expanded spec as ``study.json`` holds it: name, preset, variants (name -> its overrides),
    seeds, categories, notebooks, baseline, and the common overrides and notebook parameters.

    Parameters
    ----------
    study : Study
        The study.
    categories : sequence of str
        The categories run.
    notebooks : sequence of str
        The notebooks run.

    Returns
    -------
    dict of str to Any
        JSON-safe spec.
    """
    return {"name": study.name, "preset": study.preset,
            "variants": {v.name: dict(v.overrides) for v in study.variants}, "seeds": list(study.seeds),
            "categories": list(categories), "notebooks": list(notebooks), "baseline": study.baseline,
            "overrides": dict(study.overrides), "parameters": dict(study.parameters),
            "description": study.description, "report": study.report}
