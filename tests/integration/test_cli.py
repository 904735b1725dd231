"""The ``stfpm`` command line: train -> predict -> evaluate, and clean failures on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stfpm_lib.config import LAYERS, STFPMConfig
from stfpm_lib.records.predictions import load_predictions
from stfpm_lib.runner.cli import build_parser, main, parse_set

REPO = Path(__file__).resolve().parents[2]
FAST = ["-p", "teacher_weights", "random", "-p", "image_size", "64", "-p", "batch_size", "4",
        "-p", "epochs", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tiny_mvtec, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "brick"
    rc = main(["train", "--data-root", str(tiny_mvtec), "--category", "brick", "--out", str(out), *FAST, "--predict"])
    assert rc == 0
    return out


def test_train_predict_evaluate(trained, tiny_mvtec, capsys):
    assert (trained / "checkpoint.pt").is_file() and (trained / "predictions_test.npz").is_file()
    assert STFPMConfig.from_json(trained / "config.json") == STFPMConfig.from_preset(
        "official", teacher_weights="random", image_size=64, batch_size=4, epochs=1)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), "--split", "val", "--no-progress"]) == 0
    assert "predictions_val.npz" in capsys.readouterr().out
    out_json = trained / "metrics.json"
    assert main(["evaluate", "--predictions", str(trained / "predictions_test.npz"), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    pred = load_predictions(trained / "predictions_test.npz")
    expected = roc_auc_score(pred.labels, pred.scores)
    record = json.loads(out_json.read_text())
    metrics = record["metrics"]
    assert record["teacher_weights"]["source"] == "random" and record["config"]["image_size"] == 64
    assert metrics["image_auroc"] == pytest.approx(expected, abs=1e-9)
    assert metrics["pixel_auroc"] == pytest.approx(
        roc_auc_score(pred.masks().reshape(-1), pred.maps.astype(np.float32).reshape(-1)), abs=1e-6)
    assert f"{expected:.6g}" in printed and "image_auroc" in printed and "scratch" in printed  # per-type table
    assert "image_f1_val" in metrics  # predictions_val.npz beside it was picked up


def test_unknown_preset_exits_2_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "stfpm_lib.runner.cli", "train", "--data-root", str(tmp_path),
                           "--category", "x", "--out", str(tmp_path / "o"), "--preset", "nope"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "unknown preset 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_config_key_exits_2(tiny_mvtec, tmp_path, capsys):
    rc = main(["train", "--data-root", str(tiny_mvtec), "--category", "brick", "--out", str(tmp_path / "o"),
               "--set", "epoch=3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown override key(s) ['epoch']" in err
    assert not (tmp_path / "o").exists()


def test_bad_values_exit_2(tiny_mvtec, tmp_path, capsys):
    base = ["train", "--data-root", str(tiny_mvtec), "--category", "brick", "--out", str(tmp_path / "o")]
    assert main(base + ["--set", "epochs"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(base + ["--set", "map_fusion=mean"]) == 2
    assert "map_fusion='mean'" in capsys.readouterr().err
    cfg_file = tmp_path / "c.json"
    STFPMConfig().to_json(cfg_file)
    assert main(base + ["--config", str(cfg_file), "--preset", "xia"]) == 2
    assert "either --config or --preset" in capsys.readouterr().err


def test_missing_category_exits_2_and_leaves_no_checkpoint(tiny_mvtec, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["train", "--data-root", str(tiny_mvtec), "--category", "carpet", "--out", str(out), *FAST])
    assert rc == 2
    err = capsys.readouterr().err
    assert "category 'carpet' not found" in err and "brick" in err  # lists what was found
    assert not (out / "checkpoint.pt").exists() and not (out / "last.pt").exists()


def test_missing_files_exit_2(tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(tmp_path / "none.npz")]) == 2
    assert "none.npz" in capsys.readouterr().err


def test_config_file_and_overrides():
    from stfpm_lib.runner.cli import _config_from_args

    args = build_parser().parse_args(["train", "--category", "c", "--out", "o", "--preset", "xia",
                                      "--set", "layers=layer1,layer2", "--set", "crop_size=null",
                                      "--set", "loss_half=false", "--set", "lr=0.1"])
    cfg = _config_from_args(args)
    assert cfg.preset == "xia" and cfg.map_fusion == "sum"  # preset values kept
    assert (cfg.layers, cfg.crop_size, cfg.loss_half, cfg.lr) == (("layer1", "layer2"), None, False, 0.1)
    assert parse_set(["epochs=1e2", "lr=1.5", "loss_half=no", "backbone=resnet34", "layers=[layer1, layer2]"]) == {
        "epochs": 100, "lr": 1.5, "loss_half": False, "backbone": "resnet34", "layers": ("layer1", "layer2")}


# ----------------------------------------------------------------------------- bad data through the CLI
@pytest.fixture()
def small_root(tmp_path):
    from stfpm_lib.data import make_synthetic_category

    make_synthetic_category(tmp_path / "data", "brick", n_train=6, n_test_good=2, n_per_defect=2, size=32, seed=5)
    return tmp_path / "data"


def _train(root, out, capsys) -> tuple[int, str]:
    rc = main(["train", "--data-root", str(root), "--category", "brick", "--out", str(out), *FAST])
    return rc, capsys.readouterr().err


def _nothing_written(out) -> bool:
    return not any((out / name).exists() for name in ("checkpoint.pt", "last.pt", "history.csv", "config.json"))


def test_empty_train_good_exits_2(small_root, tmp_path, capsys):
    for path in (small_root / "brick" / "train" / "good").iterdir():
        path.unlink()
    rc, err = _train(small_root, tmp_path / "o", capsys)
    assert rc == 2 and "no training images in" in err and "train/good" in err and "Traceback" not in err
    assert _nothing_written(tmp_path / "o")


def test_truncated_training_image_exits_2_naming_it(small_root, tmp_path, capsys):
    bad = small_root / "brick" / "train" / "good" / "002.png"
    bad.write_bytes(bad.read_bytes()[:50])
    rc, err = _train(small_root, tmp_path / "o", capsys)
    assert rc == 2 and str(bad) in err
    assert _nothing_written(tmp_path / "o")


def test_defect_without_mask_exits_2(small_root, tmp_path, capsys):
    (small_root / "brick" / "ground_truth" / "blob" / "001_mask.png").unlink()
    rc, err = _train(small_root, tmp_path / "o", capsys)
    assert rc == 2 and "blob/001.png has no mask" in err
    assert _nothing_written(tmp_path / "o")


def test_mask_size_mismatch_at_predict_exits_2_and_writes_no_predictions(small_root, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "o"
    rc, err = _train(small_root, out, capsys)
    assert rc == 0, err
    mask = small_root / "brick" / "ground_truth" / "scratch" / "000_mask.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mask)
    rc = main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "000_mask.png is 16x16 but its image" in err
    assert not list(out.glob("*.npz")) and not list(out.glob(".*tmp*"))


def test_checkpoint_of_another_layer_set_exits_2(trained, tmp_path, capsys):
    expect = tmp_path / "expect.json"
    STFPMConfig.from_preset("official", teacher_weights="random", layers=["layer1", "layer2"]).to_json(expect)
    rc = main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), "--expect-config", str(expect),
               "--out", str(tmp_path / "p.npz"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "layers=['layer1', 'layer2', 'layer3']" in err and "layers=['layer1', 'layer2'] " in err
    assert "Traceback" not in err
    assert not (tmp_path / "p.npz").exists()


# ----------------------------------------------------------------------------- damaged or unusable files
def test_damaged_checkpoint_exits_2(trained, tmp_path, capsys):
    data = bytearray((trained / "checkpoint.pt").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(bytes(data))
    rc = main(["predict", "--checkpoint", str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"checkpoint {bad} is damaged" in err and "Traceback" not in err
    bad.write_bytes(bytes(data[: len(data) // 3]))  # truncated: torch.load itself fails
    rc = main(["predict", "--checkpoint", str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"checkpoint {bad} is damaged or not a checkpoint: torch.load failed" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.glob("*.npz"))


def test_batch_of_one_where_batchnorm_cannot_train_exits_2(small_root, tmp_path, capsys):
    """6 training images -> 4 after the validation split; batch_size 3 leaves a last batch of one, and at
    image_size 32 layer4 is 1x1 (BatchNorm raised 'Expected more than 1 value per channel' mid-training)."""
    out = tmp_path / "o"
    rc = main(["train", "--data-root", str(small_root), "--category", "brick", "--out", str(out), "--no-progress",
               "-p", "teacher_weights", "random", "-p", "epochs", "1", "-p", "image_size", "32", "-p", "batch_size", "3",
               "-p", "layers", "layer1,layer2,layer3,layer4"])
    err = capsys.readouterr().err
    assert rc == 2 and "batch_size=3 with 4 training images leaves a training batch of one image" in err
    assert "image_size=32" in err and "layer4 is 1x1" in err and "input size >= 33" in err
    assert "Traceback" not in err
    assert not out.exists()
    from stfpm_lib.engine.training import _check_batchnorm

    cfg = STFPMConfig.from_preset("official", image_size=32, batch_size=3, layers=LAYERS)
    _check_batchnorm(cfg, 6)  # last batch of 3: fine
    _check_batchnorm(cfg.replace(image_size=33), 4)  # layer4 is 2x2: fine
    _check_batchnorm(cfg.replace(layers=("layer1", "layer2", "layer3")), 4)  # layer3 is 2x2: fine


def test_output_folder_that_cannot_be_written_exits_2_before_training(small_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # (tests run as root: chmod would not stop the writes)
    rc, err = _train(small_root, blocker / "o", capsys)
    assert rc == 2 and f"output folder {blocker / 'o'} is not writable: a parent of it is a file" in err
    assert "Traceback" not in err and blocker.read_text() == "not a folder"


def test_disk_full_exits_2_in_words(small_root, tmp_path, capsys, monkeypatch):
    import errno

    import torch

    def full(obj, f, *args, **kwargs):  # what a file object on a full disk raises on write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "o"
    rc, err = _train(small_root, out, capsys)
    assert rc == 2 and f"cannot write {out / 'last.pt'}: disk full (no space left on device)" in err
    assert "inline_container" not in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing half-written, no temporary file


def test_evaluate_refuses_validation_predictions_of_another_split(trained, tmp_path, capsys):
    train_preds = tmp_path / "train.npz"
    assert main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), "--split", "train",
                 "--out", str(train_preds), "--no-progress"]) == 0
    capsys.readouterr()
    for wrong, split in ((train_preds, "train"), (trained / "predictions_test.npz", "test")):
        rc = main(["evaluate", "--predictions", str(trained / "predictions_test.npz"),
                   "--val-predictions", str(wrong), "--json", str(tmp_path / "m.json")])
        err = capsys.readouterr().err
        assert rc == 2 and f"{wrong} holds predictions of the '{split}' split" in err and "Traceback" not in err
    assert not (tmp_path / "m.json").exists()


def test_original_resolution_of_cropped_maps_exits_2(trained, tmp_path, capsys):
    with np.load(trained / "predictions_test.npz") as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays["config"]))
    config["crop_size"] = 56
    arrays["config"] = np.array(json.dumps(config))
    cropped = tmp_path / "cropped.npz"
    np.savez(cropped, **arrays)
    rc = main(["evaluate", "--predictions", str(cropped), "--original-resolution"])
    err = capsys.readouterr().err
    assert rc == 2 and "crop_size=56" in err and "original_resolution" in err and "Traceback" not in err


@pytest.mark.parametrize("size", ["-1", "0"])
def test_predict_batch_size_must_be_positive(trained, tmp_path, capsys, size):
    rc = main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), "--batch-size", size,
               "--out", str(tmp_path / "p.npz"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"batch_size={size} must be a positive integer" in err and "Traceback" not in err
    assert not (tmp_path / "p.npz").exists()


def test_predict_removes_temporary_files_of_killed_writes(trained, tmp_path, capsys):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale = [tmp_path / f".p.tmp{dead}.npz", tmp_path / f".predictions_val.tmp{dead}.npz"]
    for path in stale:
        path.write_bytes(b"half")
    assert main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path / "p.npz"),
                 "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MVTEC_ROOT", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


def test_one_front_door_lists_every_command_and_the_old_entry_points_still_work():
    done = _python("-m", "stfpm_lib.runner.cli", "--help")
    assert done.returncode == 0
    listed = done.stdout.split("positional arguments:")[1]
    for command in ("train", "predict", "evaluate", "run", "reproduce", "report", "study", "data", "bench"):
        assert f"\n    {command} " in listed or f"\n    {command}\n" in listed, command
    demo = _python("-m", "stfpm_lib.runner.cli", "data", "demo-path")
    assert demo.returncode == 0 and demo.stdout.strip().endswith("demo_data/piped")
    assert _python("-m", "stfpm_lib.data", "demo-path").stdout == demo.stdout  # the old address, same answer
    assert _python("-m", "stfpm_lib.batch", "reproduce", "--help").returncode == 0
    bench = _python("-m", "stfpm_lib.bench", "--help")
    assert bench.returncode == 0 and "{metrics,speed,bootstrap,figures}" in bench.stdout
    assert _python("-m", "stfpm_lib.runner.cli", "bench", "--help").stdout == bench.stdout
    # one rule for user errors, whichever door: one line, exit 2
    for door in (("-m", "stfpm_lib.runner.cli", "study"), ("-m", "stfpm_lib.batch", "study")):
        bad = _python(*door, str(REPO / "studies" / "nonexistent.yaml"), "--data-root", "demo")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and ": error: " in bad.stderr


def test_a_new_model_never_evaluates_with_the_old_ones_predictions(trained, tiny_mvtec, tmp_path, capsys):
    """Retraining into a folder removes the replaced model's predictions, and evaluate refuses validation
    predictions of another model (both used to pass silently: thresholds of model B from model A)."""
    import shutil

    out = tmp_path / "brick"
    shutil.copytree(trained, out)
    assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--split", "val", "--no-progress"]) == 0
    old_val = tmp_path / "old_val.npz"
    shutil.copy(out / "predictions_val.npz", old_val)
    argv = ["train", "--data-root", str(tiny_mvtec), "--category", "brick", "--out", str(out), "--no-resume",
            *FAST, "-p", "seed", "3"]
    assert main(argv) == 0
    assert not (out / "predictions_val.npz").exists() and not (out / "predictions_test.npz").exists()
    assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["evaluate", "--predictions", str(out / "predictions_test.npz"), "--val-predictions", str(old_val)])
    assert code == 2 and "was predicted by another model" in capsys.readouterr().err


def test_a_category_never_leaves_its_data_root(tiny_mvtec, tmp_path, capsys):
    (tiny_mvtec.parent / "outside" / "train" / "good").mkdir(parents=True, exist_ok=True)
    for category in ("../outside", "/etc", "brick/../../outside"):
        assert main(["train", "--data-root", str(tiny_mvtec), "--category", category, "--out", str(tmp_path / "o"),
                     *FAST]) == 2
        assert "is not a folder name under" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_diverged_training_stops_with_exit_2_and_no_checkpoint(tiny_mvtec, tmp_path, capsys):
    """``-p lr 1e30`` used to train to NaN, exit 0 and write a checkpoint and NaN predictions."""
    out = tmp_path / "diverged"
    code = main(["train", "--data-root", str(tiny_mvtec), "--category", "brick", "--out", str(out), *FAST,
                 "-p", "lr", "1e30", "--predict"])
    err = capsys.readouterr().err
    assert code == 2 and "training diverged at epoch 1" in err and "lr=1e+30" in err and "nan" in err
    assert not (out / "checkpoint.pt").exists() and not (out / "last.pt").exists()
    assert not list(out.glob("predictions_*.npz"))
