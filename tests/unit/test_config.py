"""The configuration object: presets, overrides, validation and JSON/YAML round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from stfpm_lib.config import PRESETS, ConfigError, STFPMConfig


def test_official_defaults_are_the_official_recipe() -> None:
    cfg = STFPMConfig()
    assert cfg == STFPMConfig.from_preset("official")
    assert (cfg.backbone, cfg.layers, cfg.image_size, cfg.crop_size) == ("resnet18", ("layer1", "layer2", "layer3"), 256, None)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (0.4, 0.9, 1e-4, 32, 100)
    assert (cfg.loss_half, cfg.loss_reduction, cfg.map_scale, cfg.map_upsample, cfg.map_fusion) == (
        False, "batch_mean", "sq_dist", "official", "product")
    assert (cfg.selection, cfg.split, cfg.split_seed, cfg.val_fraction, cfg.mask_rule) == ("val_map", "seeded", 0, 0.2, "gt0")
    assert cfg.smoothing_sigma == 0 and cfg.precision == "fp32"


def test_presets_follow_the_difference_matrix() -> None:
    xia = STFPMConfig.from_preset("xia")
    assert (xia.crop_size, xia.input_size, xia.map_fusion, xia.smoothing_sigma) == (224, 224, "sum", 4.0)
    assert STFPMConfig.from_preset("anomalib").weight_decay == 1e-3
    assert STFPMConfig.from_preset("hcw").mask_rule == "eq1"
    assert set(PRESETS) == {"official", "anomalib", "hcw", "xia"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_round_trips(preset: str, tmp_path: Path) -> None:
    cfg = STFPMConfig.from_preset(preset, epochs=3, layers=["layer2", "layer4"])
    assert STFPMConfig.from_dict(cfg.to_dict()) == cfg
    assert STFPMConfig.from_json(cfg.to_json()) == cfg
    assert STFPMConfig.from_yaml(cfg.to_yaml()) == cfg
    cfg.to_json(tmp_path / "c.json")
    cfg.to_yaml(tmp_path / "c.yaml")
    assert STFPMConfig.from_file(tmp_path / "c.json") == STFPMConfig.from_file(tmp_path / "c.yaml") == cfg


def test_layers_accept_a_comma_string_and_keep_network_order() -> None:
    cfg = STFPMConfig(layers="layer3, layer1")
    assert cfg.layers == ("layer3", "layer1") and cfg.ordered_layers == ("layer1", "layer3")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "vgg16"}, r"backbone='vgg16' is not one of"),
        ({"layers": []}, "at least one"),
        ({"layers": ["layer5"]}, r"layers=\['layer5'\]"),
        ({"layers": ["layer1", "layer1"]}, "distinct"),
        ({"crop_size": 300}, "crop_size=300"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"epochs": 0}, "epochs=0"),
        ({"smoothing_sigma": -1.0}, "smoothing_sigma"),
        ({"selection": "test_auroc"}, "selection='test_auroc'"),
        ({"cache_memory_mb": -1}, "cache_memory_mb=-1"),
    ],
)
def test_invalid_values_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        STFPMConfig.from_preset("official", **overrides)


def test_unknown_preset_and_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'paper'; choose from \['anomalib', 'hcw', 'official', 'xia'\]"):
        STFPMConfig.from_preset("paper")
    with pytest.raises(ConfigError, match=r"unknown override key\(s\) \['epoch'\]"):
        STFPMConfig.from_preset("official", epoch=3)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['lr_schedule'\]"):
        STFPMConfig.from_dict({"lr_schedule": "cosine"})
    with pytest.raises(ConfigError, match="unknown override"):
        STFPMConfig().replace(foo=1)


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON"):
        STFPMConfig.from_json(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        STFPMConfig.from_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match=r"\.toml"):
        STFPMConfig.from_file(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="not found"):
        STFPMConfig.from_json(tmp_path / "missing.json")


def test_field_lists() -> None:
    from stfpm_lib.config import CONFIG_FIELDS, RUNTIME_FIELDS

    assert "preset" not in CONFIG_FIELDS and set(CONFIG_FIELDS) == set(STFPMConfig().to_dict()) - {"preset"}
    # Runtime fields change speed, not results: the result-defining knobs are never among them.
    assert set(RUNTIME_FIELDS) <= set(CONFIG_FIELDS)
    assert not {"backbone", "layers", "teacher_weights", "epochs", "lr", "seed", "precision"} & set(RUNTIME_FIELDS)


def test_config_differences_ignore_runtime_fields_and_normalise() -> None:
    from stfpm_lib.config import config_differences

    a = STFPMConfig(epochs=3).to_dict()
    b = {**STFPMConfig(epochs=4, device="cpu", eval_batch_size=8).to_dict(), "layers": ("layer1", "layer2", "layer3")}
    assert config_differences(a, b) == [("epochs", 3, 4)]


# ----------------------------------------------------------------------------- types and ranges
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_half": "no"}, r"loss_half='no' must be a boolean"),
        ({"channels_last": "yes"}, r"channels_last='yes' must be a boolean"),
        ({"cache_teacher_features": 1}, r"cache_teacher_features=1 must be a boolean"),
        ({"seed": "abc"}, r"seed='abc' must be an integer"),
        ({"epochs": 1.5}, r"epochs=1.5 must be an integer"),
        ({"epochs": True}, r"epochs=True must be an integer"),
        ({"image_size": "64"}, r"image_size='64' must be an integer"),
        ({"momentum": "abc"}, r"momentum='abc' must be a number"),
        ({"num_workers": -3}, r"num_workers=-3 must be >= 0"),
        ({"weight_decay": -1}, r"weight_decay=-1 must be >= 0"),
        ({"momentum": 1.0}, r"momentum=1.0 must be in \[0, 1\)"),
        ({"lr": 0}, r"lr=0 must be > 0"),
        ({"lr": float("inf")}, r"lr=inf must be a finite number"),
        ({"seed": -1}, r"seed=-1 must be in \[0, 4294967295\]"),
        ({"split_seed": 2**32}, r"split_seed=4294967296 must be in"),
        ({"image_size": 16}, r"image_size=16 must be >= 32"),
        ({"crop_size": 16}, r"crop_size=16 must be >= 32"),
        ({"crop_size": 64.5}, r"crop_size=64.5 must be an integer"),
        ({"teacher_weights": ""}, r"teacher_weights must not be empty"),
        ({"teacher_weights": 3}, r"teacher_weights=3 must be a string"),
        ({"layers": 3}, r"layers=3 must be a list"),
    ],
)
def test_wrong_types_and_ranges_are_refused_naming_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        STFPMConfig.from_preset("official", **overrides)
    with pytest.raises(ConfigError, match=message):
        STFPMConfig().replace(**overrides)


def test_every_field_has_a_spec_and_numbers_are_normalised() -> None:
    import numpy as np

    from stfpm_lib.config import FIELD_SPECS

    assert set(FIELD_SPECS) == set(STFPMConfig().to_dict()) - {"preset"}
    cfg = STFPMConfig(epochs=np.int64(3), image_size=64.0, lr=1, crop_size=None, loss_half=np.bool_(True))
    assert (cfg.epochs, cfg.image_size, cfg.lr, cfg.loss_half) == (3, 64, 1.0, True)
    assert (type(cfg.epochs), type(cfg.image_size), type(cfg.lr), type(cfg.loss_half)) == (int, int, float, bool)
    # Boundaries that are allowed.
    STFPMConfig(momentum=0.0, weight_decay=0.0, num_workers=0, seed=0, split_seed=2**32 - 1, image_size=32,
                crop_size=32, smoothing_sigma=0.0, cache_memory_mb=0)


def test_each_choice_list_is_declared_once_as_a_literal_type() -> None:
    """A string field's annotation (a ``Literal``) and its validated choices are the same tuple, and the
    method's own checks use it: a choice added to the type is accepted everywhere at once."""
    import typing

    from stfpm_lib import config
    from stfpm_lib.method.anomaly_map import MapSettings
    from stfpm_lib.method.loss import stfpm_loss

    hints = typing.get_type_hints(STFPMConfig)
    literal_fields = {name for name, spec in config.FIELD_SPECS.items() if spec.kind is str and spec.choices}
    assert literal_fields == {"mask_rule", "split", "backbone", "loss_reduction", "loss_layer_reduction", "map_scale",
                              "map_upsample", "map_fusion", "selection", "device", "precision", "random_init"}
    for name in literal_fields:
        assert typing.get_origin(hints[name]) is typing.Literal, name
        assert typing.get_args(hints[name]) == config.FIELD_SPECS[name].choices, name
    assert typing.get_args(typing.get_args(hints["layers"])[0]) == config.LAYERS == config.FIELD_SPECS["layers"].choices
    assert config.LOSS_REDUCTIONS == ("batch_mean", "batch_sum")
    with pytest.raises(ValueError, match=r"reduction='mean' is not one of \['batch_mean', 'batch_sum'\]"):
        stfpm_loss([], [], reduction="mean")
    with pytest.raises(ValueError, match=r"map_fusion='mean' is not one of \['product', 'sum'\]"):
        MapSettings(map_fusion="mean")


@pytest.mark.parametrize("field, text, value", [
    ("loss_half", "no", False), ("loss_half", "False", False), ("loss_half", "0", False), ("loss_half", "off", False),
    ("channels_last", "yes", True), ("channels_last", "TRUE", True), ("channels_last", "1", True),
    ("channels_last", "on", True), ("epochs", "3", 3), ("epochs", "2.0", 2), ("epochs", "1e2", 100),
    ("seed", "12345678901234567890", 12345678901234567890), ("lr", "1e-3", 1e-3), ("lr", "2", 2.0),
    ("crop_size", "None", None), ("crop_size", "null", None), ("crop_size", "224", 224),
    ("layers", "layer1,layer3", ("layer1", "layer3")), ("layers", '["layer1", "layer2"]', ("layer1", "layer2")),
    ("teacher_weights", " /w/r18.pth ", "/w/r18.pth"), ("backbone", "resnet34", "resnet34"), ("epochs", 5, 5),
])
def test_parse_field_types_text(field: str, text, value) -> None:
    from stfpm_lib.config import parse_field

    parsed = parse_field(field, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("field, text, message", [
    ("loss_half", "maybe", r"loss_half='maybe' is not a boolean"),
    ("loss_half", "None", r"loss_half='None' is not a boolean"),
    ("epochs", "abc", r"epochs='abc' is not an integer"),
    ("epochs", "1.5", r"epochs='1.5' is not an integer"),
    ("epochs", "none", r"epochs='none' is not an integer"),
    ("lr", "abc", r"lr='abc' is not a number"),
    ("momentum", "", r"momentum='' is not a number"),
    ("lr_schedule", "cosine", r"unknown config key\(s\) \['lr_schedule'\]"),
])
def test_parse_field_errors_name_field_and_value(field: str, text: str, message: str) -> None:
    from stfpm_lib.config import parse_field

    with pytest.raises(ConfigError, match=message):
        parse_field(field, text)


def test_notebook_namespace_strings_are_parsed() -> None:
    from stfpm_lib.runner.notebook_steps import config_from_namespace

    cfg = config_from_namespace({"preset": "official", "loss_half": "no", "channels_last": "yes", "epochs": "3",
                                 "lr": None, "crop_size": "0"})
    assert (cfg.loss_half, cfg.channels_last, cfg.epochs, cfg.lr, cfg.crop_size) == (False, True, 3, 0.4, None)
    with pytest.raises(ConfigError, match="momentum='abc'"):
        config_from_namespace({"momentum": "abc"})


# ----------------------------------------------------------------------------- through the CLI and the runner
_BAD_SETS = [("loss_half=maybe", "loss_half"), ("channels_last=sometimes", "channels_last"), ("seed=abc", "seed"),
             ("epochs=1.5", "epochs"), ("epochs=abc", "epochs"), ("image_size=16", "image_size"),
             ("momentum=abc", "momentum"), ("num_workers=-3", "num_workers"), ("weight_decay=-1", "weight_decay"),
             ("lr=abc", "lr"), ("momentum=1", "momentum")]


@pytest.mark.parametrize("item, field", _BAD_SETS)
def test_cli_train_bad_values_exit_2_naming_the_field(item: str, field: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from stfpm_lib.runner.cli import main

    out = tmp_path / "out"
    key, _, value = item.partition("=")
    assert main(["train", "--category", "c", "--out", str(out), "-p", key, value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stfpm train: error: ") and f"{field}=" in err and "\n" not in err
    assert not out.exists()


def test_train_overrides_old_and_new_spelling_give_one_config() -> None:
    """``-p KEY VALUE`` is the one override syntax; ``--set KEY=VALUE`` still works, with a deprecation message."""
    import argparse

    from stfpm_lib.runner.cli import _config_from_args
    from stfpm_lib.runner.errors import UsageError

    def config(**kw):
        return _config_from_args(argparse.Namespace(**{"config": None, "preset": None, "set": [], "parameter": [], **kw}))

    new = config(parameter=[["epochs", "3"], ["layers", "layer1,layer2"], ["loss_half", "no"]])
    assert new == config(set=["epochs=3", "layers=layer1,layer2", "loss_half=no"])
    assert (new.epochs, new.layers, new.loss_half) == (3, ("layer1", "layer2"), False)
    with pytest.raises(UsageError, match="'epochs' given twice"):
        config(parameter=[["epochs", "3"]], set=["epochs=4"])


@pytest.mark.parametrize("item, field", _BAD_SETS)
def test_runner_bad_values_exit_2_naming_the_field(item: str, field: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    from stfpm_lib.runner import papermill_runner as batch
    key, _, value = item.partition("=")
    code = batch.main(["reproduce", "--results-dir", str(tmp_path / "runs"), "-p", key, value, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("python -m stfpm_lib.batch reproduce: error: ") and f"{field}=" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_runner_types_p_values_for_config_fields() -> None:
    from stfpm_lib.runner.papermill_runner import parse_overrides

    assert parse_overrides([["loss_half", "no"], ["channels_last", "on"], ["epochs", "2"], ["title", "x"],
                            ["n_examples", "3"]]) == {
        "loss_half": False, "channels_last": True, "epochs": 2, "title": "x", "n_examples": 3}


@pytest.mark.parametrize("argv", [
    ["-m", "stfpm_lib.runner.cli", "train", "--category", "c", "--out", "OUT", "-p", "lr", "abc"],
    ["-m", "stfpm_lib.batch", "reproduce", "--results-dir", "OUT", "-p", "epochs", "abc"],
])
def test_console_entry_points_print_no_traceback(argv: list[str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("MVTEC_ROOT", None)
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=300)
    field = "lr" if "lr" in argv else "epochs"
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and f"{field}='abc'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
