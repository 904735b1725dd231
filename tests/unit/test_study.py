"""Study specs (stfpm_lib.runner.study): parsing, validation and expansion of YAML files written here,
and every committed study in studies/."""

from __future__ import annotations

from pathlib import Path

import pytest

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data.mvtec import MVTEC_CATEGORIES
from stfpm_lib.runner.study import StudyError, expand_jobs, load_study, narrow_study, safe_name, study_spec

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_named_variants_seeds_and_categories_expand_in_order(tmp_path):
    path = _write(tmp_path, """
description: two layer sets
overrides: {epochs: "3", loss_half: no, weight_decay: 1e-3}
variants:
  l123: {}
  l12: {layers: [layer1, layer2], map_fusion: sum}
seeds: [0, 7]
categories: [bottle, carpet]
baseline: l123
""", name="layers_test.yaml")
    study = load_study(path)
    assert study.name == "layers_test" and study.preset == "official" and study.baseline == "l123"
    # text typed by parse_field: "3" -> 3, YAML's no -> False, PyYAML's string "1e-3" -> 0.001
    assert study.overrides == {"epochs": 3, "loss_half": False, "weight_decay": 0.001}
    assert [(v.name, dict(v.overrides)) for v in study.variants] == [
        ("l123", {}), ("l12", {"layers": ["layer1", "layer2"], "map_fusion": "sum"})]
    jobs = expand_jobs(study)
    assert [j.label for j in jobs] == ["l123/seed0/bottle", "l123/seed0/carpet", "l123/seed7/bottle",
                                       "l123/seed7/carpet", "l12/seed0/bottle", "l12/seed0/carpet",
                                       "l12/seed7/bottle", "l12/seed7/carpet"]
    job = jobs[6]
    assert job.run_subdir == Path("runs/l12/seed7")
    assert job.overrides == {"epochs": 3, "loss_half": False, "weight_decay": 0.001,
                             "layers": ["layer1", "layer2"], "map_fusion": "sum", "seed": 7}
    assert job.record == {"study": "layers_test", "variant": "l12",
                          "overrides": {"layers": ["layer1", "layer2"], "map_fusion": "sum"}, "seed": 7,
                          "category": "bottle"}
    assert study.config(job.variant, 7) == STFPMConfig.from_preset(
        "official", epochs=3, weight_decay=1e-3, layers=("layer1", "layer2"), map_fusion="sum", seed=7)
    spec = study_spec(study, ["bottle", "carpet"], ["02_train.ipynb", "03_evaluate.ipynb"])
    assert {k: spec[k] for k in ("name", "preset", "variants", "seeds", "categories", "notebooks", "baseline")} == {
        "name": "layers_test", "preset": "official",
        "variants": {"l123": {}, "l12": {"layers": ["layer1", "layer2"], "map_fusion": "sum"}},
        "seeds": [0, 7], "categories": ["bottle", "carpet"], "notebooks": ["02_train.ipynb", "03_evaluate.ipynb"],
        "baseline": "l123"}


def test_grid_is_a_cartesian_product_and_crosses_named_variants(tmp_path):
    path = _write(tmp_path, """
name: g
preset: anomalib
grid:
  backbone: [resnet18, resnet34]
  smoothing_sigma: [0, 4]
  cache_teacher_features: [true, false]
""")
    study = load_study(path)
    names = [v.name for v in study.variants]
    assert len(names) == 8 and names[0] == "backbone-resnet18__smoothing_sigma-0__cache_teacher_features-true"
    assert names[-1] == "backbone-resnet34__smoothing_sigma-4__cache_teacher_features-false"
    assert study.variants[-1].overrides == {"backbone": "resnet34", "smoothing_sigma": 4.0,
                                            "cache_teacher_features": False}
    assert study.seeds == (0,) and study.categories == "all" and study.notebooks == ("02_train.ipynb", "03_evaluate.ipynb")
    assert len(expand_jobs(study, ["a", "b", "c"])) == 24
    with pytest.raises(StudyError, match="categories: all needs the data root's categories"):
        expand_jobs(study)
    both = load_study(_write(tmp_path, """
variants: {plain: {}, half: {loss_half: true}}
grid: {layers: [[layer1], [layer2, layer3]]}
"""))
    assert [(v.name, dict(v.overrides)) for v in both.variants] == [
        ("plain__layers-layer1", {"layers": ["layer1"]}),
        ("plain__layers-layer2+layer3", {"layers": ["layer2", "layer3"]}),
        ("half__layers-layer1", {"loss_half": True, "layers": ["layer1"]}),
        ("half__layers-layer2+layer3", {"loss_half": True, "layers": ["layer2", "layer3"]})]


@pytest.mark.parametrize("text, message", [
    ("variants: {a: {}}\nepochs: 3\n", r"unknown key\(s\) \['epochs'\]"),
    ("variants: {a: {epoch: 3}}\n", r"variants\.a\.epoch: unknown STFPMConfig field"),
    ("variants: {a: {epochs: abc}}\n", r"variants\.a\.epochs: epochs='abc' is not an integer"),
    ("variants: {a: {momentum: 1.5}}\n", r"variants\.a\.momentum: momentum=1\.5 must be in \[0, 1\)"),
    ("variants: {a: {layers: [layer5]}}\n", r"variants\.a\.layers: layers=\['layer5'\] must be distinct"),
    ("overrides: {loss_half: maybe}\nvariants: {a: {}}\n", r"overrides\.loss_half: loss_half='maybe' is not a boolean"),
    ("variants: {a: {seed: 1}}\n", r"variants\.a\.seed: not an override \(use the study's 'seeds' list\)"),
    ("variants: {a: {category: x}}\n", r"variants\.a\.category: not an override \(the runner sets it\)"),
    ("grid: {backbone: [resnet18, vgg]}\n", r"grid\.backbone\[1\]: backbone='vgg' is not one of"),
    ("grid: {backbone: []}\n", r"grid\.backbone must be a non-empty list"),
    ("grid: {teacher_weights: [/x/y.pth]}\n", r"grid \{.teacher_weights.: ./x/y.pth.\} \(use named variants for such values\): .teacher_weights-/x/y.pth. is not a safe"),
    ("description: nothing to run\n", r"empty grid: give 'variants'"),
    ("variants: {}\n", r"empty grid"),
    ("variants: {a: {}, a: {epochs: 2}}\n", r"key 'a' given twice \(line 1\)"),
    ("variants: {a: {}}\ngrid: {epochs: [1, 2]}\n", None),
    ("variants: {a: {epochs: 1}}\ngrid: {epochs: [1, 2]}\n", r"variants\.a and grid both set \['epochs'\]"),
    ("variants: {a: {}}\ngrid: {epochs: [1, 1.0]}\n", r"duplicate variant name 'a__epochs-1'"),
    ("variants: {../up: {}}\n", r"variants\.\.\./up: '\.\./up' is not a safe folder name"),
    ("name: my study\nvariants: {a: {}}\n", r"name: 'my study' is not a safe folder name"),
    ("preset: paper\nvariants: {a: {}}\n", r"preset: unknown preset 'paper'"),
    ("variants: {a: {}}\nseeds: 3\n", r"seeds must be a non-empty list"),
    ("variants: {a: {}}\nseeds: [0, -1]\n", r"seeds\[1\]: seed=-1 must be in \[0, 4294967295\]"),
    ("variants: {a: {}}\nseeds: [1, 1]\n", r"seeds \[1, 1\] repeat a seed"),
    ("variants: {a: {}}\nbaseline: b\n", r"baseline 'b' is not a variant; variants: \['a'\]"),
    ("variants: {a: {}}\ncategories: []\n", r"categories must be a non-empty list"),
    ("variants: {a: {}}\nparameters: {epochs: 2}\n", r"parameters \['epochs'\] are config fields"),
    ("variants: {a: {crop_size: 300}}\n", r"variants\.a\.crop_size: crop_size=300 must be in \[32, image_size=256\]"),
    ("variants: {a: {image_size: 64, crop_size: 128}}\n", r"variants\.a: crop_size=128 must be in \[32, image_size=64\]"),
    ("- a\n- b\n", r"a study must be a mapping"),
    ("variants: {a: {}\n", r"not valid YAML"),
])
def test_bad_specs_name_the_file_and_the_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    if message is None:
        assert [v.name for v in load_study(path).variants] == ["a__epochs-1", "a__epochs-2"]
        return
    with pytest.raises(StudyError, match=message) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}: ") or "given twice" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_and_unsafe_categories(tmp_path):
    with pytest.raises(StudyError, match="study file not found"):
        load_study(tmp_path / "nope.yaml")
    study = load_study(_write(tmp_path, "variants: {a: {}}\ncategories: [ok, bad/name]\n"))
    with pytest.raises(StudyError, match=r"categories: 'bad/name' is not a safe folder name"):
        expand_jobs(study)
    assert safe_name("seed0.v-1+x_y", "x") == "seed0.v-1+x_y"
    for bad in ("", ".hidden", "a b", "a/b", "x" * 101, 3):
        with pytest.raises(StudyError):
            safe_name(bad, "x")


def test_committed_studies_load_and_expand():
    """Every study in studies/ parses, validates and expands (catches typos in committed files)."""
    assert {p.stem for p in STUDIES} >= {"demo", "layers", "backbones", "teacher", "factors", "seeds"}
    for path in STUDIES:
        study = load_study(path)
        categories = None if study.categories != "all" else (
            ["PA_BFT01_TL", "PA_BRG03_TL"] if study.data_root == "demo" else list(MVTEC_CATEGORIES))
        jobs = expand_jobs(study, categories)
        assert len(jobs) == len(study.variants) * len(study.seeds) * len(categories or study.categories)
        assert study.baseline in [v.name for v in study.variants], path
        for variant in study.variants:
            study.config(variant, study.seeds[0])  # builds
    demo = load_study(REPO / "studies" / "demo.yaml")
    assert demo.data_root == "demo" and demo.overrides["teacher_weights"] == "random"
    factors = load_study(REPO / "studies" / "factors.yaml")
    assert factors.variant("official").overrides == {}
    assert all(len(v.overrides) == 1 for v in factors.variants if v.name != "official")  # one factor at a time


def test_the_committed_study_headers_count_their_trainings():
    """Each file's comment line 'N variants x S seeds x 15 MVTec AD categories = T trainings' is right."""
    import re

    for path in STUDIES:
        study = load_study(path)
        if study.data_root == "demo":
            continue
        m = re.search(r"^# (\d+) variants? x (\d+) seeds x 15 MVTec AD categories = ([\d,]+) trainings", path.read_text(),
                      re.M)
        assert m, path
        assert (int(m[1]), int(m[2]), int(m[3].replace(",", ""))) == (
            len(study.variants), len(study.seeds), len(study.variants) * len(study.seeds) * 15), path


def test_command_line_narrowing(tmp_path):
    path = _write(tmp_path, """
overrides: {epochs: 100}
variants:
  imagenet: {}
  random: {teacher_weights: random}
  zero: {teacher_weights: random, random_init: zero_last_bn, image_size: 128}
seeds: [0, 1, 2, 3, 4]
baseline: imagenet
""")
    study = load_study(path)
    small = narrow_study(study, params=[("epochs", "3"), ("image_size", "64")], seeds="0,1,2",
                         categories="PA_BFT01_TL", variants="random,zero", baseline="random")
    assert small.overrides == {"epochs": 3, "image_size": 64} and small.seeds == (0, 1, 2)
    assert [v.name for v in small.variants] == ["random", "zero"] and small.baseline == "random"
    assert small.categories == ("PA_BFT01_TL",)
    assert small.config(small.variant("random"), 1).image_size == 64
    assert small.config(small.variant("zero"), 1).image_size == 128  # a variant's own override wins
    assert narrow_study(study) == study
    with pytest.raises(StudyError, match=r"baseline 'imagenet' is not among the variants \['random'\]"):
        narrow_study(study, variants="random")
    with pytest.raises(StudyError, match=r"--variants \['nope'\]: not variants"):
        narrow_study(study, variants="random,nope", baseline="random")
    with pytest.raises(StudyError, match=r"-p.epochs"):
        narrow_study(study, params=[("epochs", "zero")])
    with pytest.raises(StudyError, match=r"-p.seed: not an override"):
        narrow_study(study, params=[("seed", "1")])
    with pytest.raises(StudyError, match=r"variant 'zero' with -p \{'crop_size': '200'\}"):
        narrow_study(study, params=[("crop_size", "200")])  # fits the others' 256 px, not zero's 128 px


def test_alias_bombs_and_wrong_types_are_refused_before_use(tmp_path):
    """Nested YAML aliases that expand exponentially used to exhaust memory when the description was printed."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "\n".join(levels) + "\ndescription: *a8\nvariants: {v: {}}\ncategories: [bottle]\n"
    with pytest.raises(StudyError, match="aliases expand to more than 100,000 values"):
        load_study(_write(tmp_path, bomb))
    with pytest.raises(StudyError, match="description must be a text, got list"):
        load_study(_write(tmp_path, "description: [1, 2]\nvariants: {v: {}}\ncategories: [bottle]\n"))
    shared = "base: &b {epochs: 2}\nvariants: {v1: *b, v2: *b}\ncategories: [bottle]\n"  # a modest alias is fine
    with pytest.raises(StudyError, match="unknown key"):  # ... up to the unknown key 'base' it carries
        load_study(_write(tmp_path, shared))
