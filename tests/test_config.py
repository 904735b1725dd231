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
