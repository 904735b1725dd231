"""Training and inference end to end on the tiny MVTec-layout dataset (real PNGs, random teacher)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import index_category
from stfpm_lib.engine.checkpoint import CheckpointError, checkpoint_sha256, load_checkpoint, read_checkpoint
from stfpm_lib.engine.inference import PredictionsError, load_predictions, predict
from stfpm_lib.engine.training import TrainError, TrainingState, fit
from stfpm_lib.method.anomaly_map import anomaly_map

CFG = STFPMConfig.from_preset("official", teacher_weights="random", image_size=64, batch_size=4,
                              eval_batch_size=8, epochs=2, selection="val_loss")


pytestmark = pytest.mark.usefixtures("one_thread")


def students_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def history_without_time(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=["epoch_time_s"])


@pytest.fixture(scope="module")
def run(tiny_mvtec, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = fit(CFG, tiny_mvtec, "brick", out, progress=False)
    return result


@pytest.fixture(scope="module")
def preds(run, tiny_mvtec):
    return load_predictions(predict(run.checkpoint_path, tiny_mvtec, "brick"))


def test_fit_writes_a_complete_checkpoint(run, tiny_mvtec):
    out = run.checkpoint_path.parent
    assert run.checkpoint_path.name == "checkpoint.pt" and run.checkpoint_path.is_file()
    assert not (out / "last.pt").exists()  # removed once the run finished
    assert (out / "history.csv").is_file() and STFPMConfig.from_json(out / "config.json") == CFG
    h = run.history
    assert list(h.columns) == ["epoch", "train_loss", "val_loss", "val_map", "epoch_time_s"]
    assert h["epoch"].tolist() == [1, 2]
    assert np.isfinite(h[["train_loss", "val_loss", "val_map"]].to_numpy()).all()
    assert (h[["train_loss", "val_loss", "val_map"]] > 0).all().all()
    # selection: the epoch with the lowest validation loss
    assert run.best_epoch == int(h.loc[h["val_loss"].idxmin(), "epoch"])
    assert run.selection_value == pytest.approx(h["val_loss"].min())
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), h, check_dtype=False)
    assert run.teacher_weights["source"] == "random" and run.teacher_weights["seed"] == 0
    assert len(run.teacher_weights["state_sha256"]) == 64

    model, cfg, meta = load_checkpoint(run.checkpoint_path, expect=CFG)
    assert cfg == CFG and not model.training and not model.teacher.training
    assert meta["epoch"] == run.best_epoch and meta["selection"] == "val_loss"
    counts = index_category(tiny_mvtec, "brick").counts()
    assert meta["dataset"]["counts"] == counts and meta["dataset"]["category"] == "brick"
    # official split of 12 sorted train images: sklearn test_size=0.2 -> 3 validation images
    assert len(meta["dataset"]["val_images"]) == 3 and len(meta["dataset"]["train_images"]) == 9
    assert meta["teacher_weights"] == run.teacher_weights


def test_predictions_file(preds, run, tiny_mvtec):
    index = index_category(tiny_mvtec, "brick")
    n = len(index.test)
    assert preds.path == run.checkpoint_path.parent / "predictions_test.npz"
    assert preds.maps.shape == (n, 64, 64) and preds.maps.dtype == np.float32
    assert preds.scores.dtype == np.float32 and preds.labels.dtype == np.int8
    # official order: good first, then the defects by path
    assert [str(p) for p in preds.image_paths] == [str(s.image_path.resolve()) for s in index.test]
    assert preds.labels.tolist() == [s.label for s in index.test]
    assert preds.defect_types.tolist() == [s.defect_type for s in index.test]
    assert all((m == "") == (lab == 0) for m, lab in zip(preds.mask_paths, preds.labels))
    # scores = max of the float32 map
    np.testing.assert_array_equal(preds.scores, preds.maps.max(axis=(1, 2)))
    assert (preds.maps >= 0).all()
    masks = preds.masks()
    assert masks.shape == preds.maps.shape and masks.dtype == bool
    assert (masks.sum(axis=(1, 2)) > 0).tolist() == (preds.labels == 1).tolist()
    # another mask rule reloads the files (synthetic masks are exact at 64x64: same result)
    np.testing.assert_array_equal(preds.masks("nearest"), masks)
    assert preds.config == CFG.to_dict() and preds.teacher_weights == run.teacher_weights
    assert preds.dataset["category"] == "brick" and preds.split == "test"
    assert preds.image_sizes.tolist() == [[64, 64]] * n
    assert preds.meta["timing"]["n_images"] == n and preds.meta["checkpoint_epoch"] == run.best_epoch
    frame = preds.to_frame()
    assert len(frame) == n and frame["score"].tolist() == pytest.approx(preds.scores.tolist())


def test_predictions_match_the_model(preds, run):
    """The stored map of one image equals the map recomputed from the loaded checkpoint."""
    from stfpm_lib.data import load_image

    model, cfg, _ = load_checkpoint(run.checkpoint_path)
    i = int(np.argmax(preds.labels))  # first defect image
    x = load_image(preds.image_paths[i], cfg)[None]
    with torch.inference_mode():
        t, s = model(x)
        ref = anomaly_map(t, s, cfg, 64)[0].numpy()
    np.testing.assert_allclose(preds.maps[i].astype(np.float32), ref, rtol=1e-3, atol=1e-6)


def test_float16_maps_option(run, preds, tiny_mvtec, tmp_path):
    exact = preds  # float32, the default
    half = load_predictions(predict(run.checkpoint_path, tiny_mvtec, "brick", tmp_path / "f16.npz",
                                    maps_dtype="float16"))
    assert exact.maps.dtype == np.float32 and exact.meta["maps_dtype"] == "float32"
    assert half.maps.dtype == np.float16 and half.meta["maps_dtype"] == "float16"
    np.testing.assert_array_equal(exact.maps.astype(np.float16), half.maps)  # float16 = rounded float32
    np.testing.assert_array_equal(exact.scores, half.scores)
    assert half.meta["float16_subnormal_fraction"] == pytest.approx(
        float(((exact.maps < np.finfo(np.float16).tiny) & (exact.maps > 0)).mean()), abs=1e-12)


def test_val_split_predictions(run, tiny_mvtec, tmp_path):
    path = predict(run.checkpoint_path, tiny_mvtec, "brick", tmp_path / "val.npz", split="val")
    val = load_predictions(path)
    assert len(val) == 3 and (val.labels == 0).all() and not val.masks().any()
    # exactly the held-out normals of the official seeded split
    from stfpm_lib.data import index_category, split_train_val

    held_out = split_train_val(index_category(tiny_mvtec, "brick").train, CFG)[1]
    assert sorted(map(str, val.image_paths)) == sorted(map(str, held_out))
    with pytest.raises(ValueError, match="split"):
        predict(run.checkpoint_path, tiny_mvtec, "brick", split="holdout")


def test_same_seed_twice_gives_identical_maps(run, preds, tiny_mvtec, tmp_path):
    again = fit(CFG, tiny_mvtec, "brick", tmp_path / "again", progress=False)
    a = torch.load(run.checkpoint_path, weights_only=True)
    b = torch.load(again.checkpoint_path, weights_only=True)
    assert students_equal(a["student"], b["student"])
    pd.testing.assert_frame_equal(history_without_time(run.history), history_without_time(again.history))
    maps = load_predictions(predict(again.checkpoint_path, tiny_mvtec, "brick")).maps
    np.testing.assert_array_equal(maps, preds.maps)


def test_training_state_round_trips_last_pt(tiny_mvtec, tmp_path, fit_interrupted):
    """TrainingState.from_dict(last.pt) -> to_dict() gives the file back: same keys in the same
    order, same content hash (so the on-disk format is the state object's)."""
    cfg = CFG.replace(epochs=2)
    out = tmp_path / "run"
    fit_interrupted(1, cfg, tiny_mvtec, "brick", out)
    saved = read_checkpoint(out / "last.pt", "resume file")
    state = TrainingState.from_dict(saved)
    assert state.epoch == 1 and len(state.history) == 1 and state.best["epoch"] == 1
    assert state.rng["numpy"][1].dtype == np.uint32  # NumPy's own state form, ready for set_rng_state
    again = state.to_dict()
    assert list(again) == [k for k in saved if k not in ("student_sha256", "content_sha256")]
    again["student_sha256"] = saved["student_sha256"]
    assert checkpoint_sha256(again) == saved["content_sha256"]


def test_resume_gives_the_uninterrupted_result(tiny_mvtec, tmp_path, fit_interrupted):
    cfg = CFG.replace(epochs=3, selection="val_map")
    full = fit(cfg, tiny_mvtec, "grass", tmp_path / "full", progress=False)
    out = tmp_path / "resumed"
    fit_interrupted(2, cfg, tiny_mvtec, "grass", out)
    assert (out / "last.pt").is_file() and not (out / "checkpoint.pt").exists()
    resumed = fit(cfg, tiny_mvtec, "grass", out, progress=False)
    assert resumed.resumed_from_epoch == 2 and full.resumed_from_epoch == 0
    pd.testing.assert_frame_equal(history_without_time(full.history), history_without_time(resumed.history))
    assert resumed.best_epoch == full.best_epoch == int(full.history["val_map"].idxmin()) + 1
    a = torch.load(full.checkpoint_path, weights_only=True)
    b = torch.load(resumed.checkpoint_path, weights_only=True)
    assert students_equal(a["student"], b["student"])

    # A finished run with the same config is returned as is (not retrained) ...
    mtime = full.checkpoint_path.stat().st_mtime_ns
    again = fit(cfg, tiny_mvtec, "grass", tmp_path / "full", progress=False)
    assert again.best_epoch == full.best_epoch and full.checkpoint_path.stat().st_mtime_ns == mtime
    # ... and one with another config is refused, naming the difference.
    with pytest.raises(TrainError, match="lr: 0.4 vs 0.1"):
        fit(cfg.replace(lr=0.1), tiny_mvtec, "grass", tmp_path / "full", progress=False)


def test_selection_last_and_other_layers(tiny_mvtec, tmp_path):
    cfg = CFG.replace(selection="last", layers=("layer2",), map_upsample="direct")
    result = fit(cfg, tiny_mvtec, "grass", tmp_path / "last", progress=False)
    assert result.best_epoch == 2 and result.selection_value is None
    model, loaded, _ = load_checkpoint(result.checkpoint_path)
    assert loaded.layers == ("layer2",) and not hasattr(model.student, "layer3")


def test_load_checkpoint_rejects_other_backbone_or_layers(run):
    with pytest.raises(CheckpointError, match=r"backbone=resnet18 layers=\['layer1', 'layer2', 'layer3'\].*"
                                              r"backbone=resnet34 layers=\['layer1', 'layer2', 'layer3'\]"):
        load_checkpoint(run.checkpoint_path, expect=CFG.replace(backbone="resnet34"))
    with pytest.raises(CheckpointError, match=r"layers=\['layer1', 'layer2', 'layer3'\].*layers=\['layer2'\]"):
        load_checkpoint(run.checkpoint_path, expect=CFG.replace(layers=("layer2",)))


def test_load_checkpoint_bad_files(run, tmp_path):
    with pytest.raises(CheckpointError, match="not found.*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    # a checkpoint whose recorded teacher differs from the one rebuilt from its config
    ckpt = torch.load(run.checkpoint_path, weights_only=True)
    ckpt["teacher_weights"]["state_sha256"] = "0" * 64
    ckpt["content_sha256"] = checkpoint_sha256(ckpt)  # an intact file, only of another teacher
    torch.save(ckpt, tmp_path / "other_teacher.pt")
    with pytest.raises(CheckpointError, match="not the one used in training"):
        load_checkpoint(tmp_path / "other_teacher.pt")


def test_load_predictions_bad_files(tmp_path):
    with pytest.raises(PredictionsError, match="not found"):
        load_predictions(tmp_path / "none.npz")
    np.savez(tmp_path / "other.npz", maps=np.zeros((1, 2, 2)))
    with pytest.raises(PredictionsError, match="missing"):
        load_predictions(tmp_path / "other.npz")


def test_val_map_is_the_official_quarter_size_mean(run, tiny_mvtec):
    """val_map is the official criterion: np.mean over every pixel of every validation image's fused
    quarter-size map, in float64 (the reference is written here with numpy)."""
    from stfpm_lib.data import load_image
    from stfpm_lib.engine.inference import recorded_split
    from stfpm_lib.engine.training import validate
    from stfpm_lib.method.anomaly_map import fused_map

    model, cfg, meta = load_checkpoint(run.checkpoint_path)
    val_paths = recorded_split(meta["dataset"], index_category(tiny_mvtec, "brick"), "val", cfg)
    x = torch.stack([load_image(p, cfg) for p in val_paths])
    with torch.inference_mode():
        fused = fused_map(*model.eval()(x), cfg, cfg.input_size).numpy()
    assert fused.dtype == np.float32 and fused.shape == (len(val_paths), cfg.input_size // 4, cfg.input_size // 4)
    reference = float(np.mean(fused.astype(np.float64)))
    # the same maps, summed in another order in float64 (torch vs numpy's pairwise): equal to ~1e-16 relative
    _, val_map = validate(model, [(x, None)], cfg, torch.device("cpu"))
    assert val_map == pytest.approx(reference, rel=1e-12)
    # the kept epoch's history value: the same criterion over the training loop's batches (float32
    # forward passes of other batch sizes differ by ~1e-7)
    kept = run.history.loc[run.history["epoch"] == run.best_epoch, "val_map"].item()
    assert kept == pytest.approx(reference, rel=1e-5)


def test_precision_and_memory_format_hooks(tiny_mvtec, tmp_path):
    from stfpm_lib.config import ConfigError

    cfg = CFG.replace(epochs=1, layers=("layer1", "layer2"), selection="last")
    ref = fit(cfg, tiny_mvtec, "grass", tmp_path / "fp32", progress=False)
    cl = fit(cfg.replace(channels_last=True), tiny_mvtec, "grass", tmp_path / "cl", progress=False)
    np.testing.assert_allclose(cl.history["train_loss"], ref.history["train_loss"], rtol=1e-3)  # 3 SGD steps at lr 0.4 amplify rounding
    np.testing.assert_allclose(cl.history["val_map"], ref.history["val_map"], rtol=3e-2)
    # forward passes of one model agree closely in both memory formats
    from stfpm_lib.engine.device import prepare_input, prepare_model

    model, _, _ = load_checkpoint(ref.checkpoint_path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = model(x)
        model = prepare_model(model, torch.device("cpu"), channels_last=True)
        b = model(prepare_input(x, torch.device("cpu"), channels_last=True))
    assert b[1][0].is_contiguous(memory_format=torch.channels_last)
    for fa, fb in zip(a[0] + a[1], b[0] + b[1]):
        torch.testing.assert_close(fa, fb.contiguous(), rtol=1e-4, atol=1e-5)
    bf = fit(cfg.replace(precision="bf16"), tiny_mvtec, "grass", tmp_path / "bf16", progress=False)
    # bf16 autocast: same loss to ~2 significant digits (the loss itself is computed in float32)
    np.testing.assert_allclose(bf.history["train_loss"], ref.history["train_loss"], rtol=5e-2)
    with pytest.raises(ConfigError, match="fp16"):  # CPU: refused before anything is written
        fit(cfg.replace(precision="fp16", device="cpu"), tiny_mvtec, "grass", tmp_path / "fp16", progress=False)
    assert not (tmp_path / "fp16").exists()
    # teacher feature cache (exactness is tested in test_speed_paths.py): same history here
    cached = fit(cfg.replace(cache_teacher_features=True), tiny_mvtec, "grass", tmp_path / "cache", progress=False)
    np.testing.assert_allclose(cached.history["train_loss"], ref.history["train_loss"], rtol=1e-6)
    assert cached.teacher_cache["train"]["capacity"] == 9 and cached.teacher_cache["val"]["capacity"] == 3


# ----------------------------------------------------------------------------- damaged checkpoints
def _members(path):
    """(name, data offset, size) of each member of a torch zip checkpoint (standard zip layout)."""
    import struct
    import zipfile

    out = []
    with zipfile.ZipFile(path) as zf, open(path, "rb") as handle:
        for info in zf.infolist():
            handle.seek(info.header_offset)
            header = handle.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            out.append((info.filename, info.header_offset + 30 + name_len + extra_len, info.file_size))
    return out


def _flipped(src, dst, offset, n=64):
    data = bytearray(src.read_bytes())
    data[offset:offset + n] = bytes(b ^ 0xFF for b in data[offset:offset + n])
    dst.write_bytes(bytes(data))
    return dst


def test_damaged_checkpoint_is_refused(run, tmp_path):
    """64 bytes flipped anywhere that matters: in the student tensors (the largest, the smallest, the
    file's middle), in the pickled metadata (config, history...) or in the zip directory at the end."""
    src = run.checkpoint_path
    members = _members(src)
    tensors = [m for m in members if "/data/" in m[0] and m[2] >= 64]
    pickle = next(m for m in members if m[0].endswith("data.pkl"))
    largest, smallest = max(tensors, key=lambda m: m[2]), min(tensors, key=lambda m: m[2])
    middle = src.stat().st_size // 2
    assert any(off <= middle and middle + 64 <= off + size for _, off, size in tensors)  # the middle is tensor data
    offsets = {"largest tensor": largest[1] + largest[2] // 2, "smallest tensor": smallest[1],
               "file middle": middle, "metadata": pickle[1] + pickle[2] // 2,
               "metadata start": pickle[1] + 2, "zip directory": src.stat().st_size - 100}
    for where, offset in offsets.items():
        bad = _flipped(src, tmp_path / f"{where.replace(' ', '_')}.pt", offset)
        with pytest.raises(CheckpointError, match=f"{bad.name}.*(damaged|not an STFPM)") as info:
            load_checkpoint(bad)
        if "tensor" in where or where == "file middle":
            assert "student tensors' sha256" in str(info.value), where
    load_checkpoint(src)  # the intact file still loads


def test_damaged_resume_file_is_refused(tiny_mvtec, tmp_path):
    class Interrupt(Exception):
        pass

    def stop(row):
        raise Interrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        fit(CFG, tiny_mvtec, "brick", out, progress=False, log=stop)
    last = out / "last.pt"
    _, offset, size = max((m for m in _members(last) if "/data/" in m[0]), key=lambda m: m[2])
    _flipped(last, last, offset + size // 3)
    with pytest.raises(CheckpointError, match="resume file .*last.pt is damaged"):
        fit(CFG, tiny_mvtec, "brick", out, progress=False)
    assert not (out / "checkpoint.pt").exists()


def test_version_1_checkpoints_without_hashes_still_load(run, tmp_path):
    ckpt = torch.load(run.checkpoint_path, weights_only=True)
    assert ckpt["version"] == 2 and ckpt["content_sha256"] == checkpoint_sha256(ckpt)
    for key in ("student_sha256", "content_sha256"):
        del ckpt[key]
    ckpt["version"] = 1
    torch.save(ckpt, tmp_path / "v1.pt")
    model, cfg, meta = load_checkpoint(tmp_path / "v1.pt")
    assert cfg == CFG and meta["version"] == 1


# ----------------------------------------------------------------------------- the recorded split
def test_val_split_is_the_recorded_one_and_changed_images_are_refused(run, tiny_mvtec, tmp_path):
    import shutil

    from stfpm_lib.data import DataError

    root = tmp_path / "data"
    shutil.copytree(tiny_mvtec / "brick", root / "brick")
    record = torch.load(run.checkpoint_path, weights_only=True)["dataset"]
    train_dir = root / "brick" / "train" / "good"
    assert record["val_files"] == [f"train/good/{n}" for n in record["val_images"]]
    assert len(record["val_sha256"]) == len(record["val_images"]) == 3 and len(record["train_sha256"]) == 9
    (train_dir / record["train_images"][0]).unlink()  # one training image deleted
    val = load_predictions(predict(run.checkpoint_path, root, "brick", tmp_path / "val.npz", split="val"))
    assert [Path(p).name for p in val.image_paths] == record["val_images"]  # not a split recomputed from 11 images
    assert not {Path(p).name for p in val.image_paths} & set(record["train_images"])
    train = load_predictions(predict(run.checkpoint_path, tiny_mvtec, "brick", tmp_path / "train.npz", split="train"))
    assert [Path(p).name for p in train.image_paths] == record["train_images"]
    # a recorded image that is gone, or changed, is refused by name
    with pytest.raises(DataError, match=f"1 of the 9 train images recorded in the checkpoint are gone: "
                                        f".*{record['train_images'][0]}"):
        predict(run.checkpoint_path, root, "brick", tmp_path / "t.npz", split="train")
    changed = train_dir / record["val_images"][1]
    changed.write_bytes((train_dir / record["val_images"][0]).read_bytes())
    with pytest.raises(DataError, match=f"1 of the 3 val images .* have changed since training .*{changed.name}"):
        predict(run.checkpoint_path, root, "brick", tmp_path / "v.npz", split="val")
    assert not (tmp_path / "v.npz").exists() and not (tmp_path / "t.npz").exists()


def test_relative_data_root_is_recorded_absolute(tiny_mvtec, tmp_path, monkeypatch):
    import shutil

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    shutil.copytree(tiny_mvtec / "brick", here / "data" / "brick")
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    proc = __import__("subprocess").Popen(["true"])
    proc.wait()
    stale = here / "run" / f".last.tmp{proc.pid}.pt"  # left by a killed run (its process is gone)
    stale.parent.mkdir()
    stale.write_bytes(b"half a checkpoint")
    result = fit(CFG.replace(epochs=1), "data", "brick", "run", progress=False)
    assert not stale.exists()
    monkeypatch.chdir(elsewhere)
    ckpt = here / "run" / "checkpoint.pt"
    pred = load_predictions(predict(ckpt, split="val"))
    assert result.checkpoint_path == Path("run") / "checkpoint.pt"
    assert pred.dataset["root"] == str(here / "data") and torch.load(ckpt, weights_only=True)["dataset"]["root"] \
        == str(here / "data")
    assert all(Path(p).parent == here / "data" / "brick" / "train" / "good" for p in pred.image_paths)


# ----------------------------------------------------------------------------- test-set leakage selection
def test_test_pixel_auroc_selection_reads_the_test_set_and_stops_early(run, tiny_mvtec, tmp_path):
    """``selection="test_pixel_auroc"`` (anomalib's early stopping, test-set leakage): the kept epoch has
    the highest test pixel AUROC, that value is the pixel AUROC of the kept student's test maps
    (recomputed here from its predictions), training stops ``patience`` epochs after it, the batch
    order is the one without leakage, and the checkpoint is labelled."""
    from stfpm_lib import metrics as M

    cfg = CFG.replace(selection="test_pixel_auroc", epochs=6, patience=1)
    result = fit(cfg, tiny_mvtec, "brick", tmp_path / "leak", progress=False)
    h = result.history
    assert "test_pixel_auroc" in h.columns and h["test_pixel_auroc"].between(0, 1).all()
    best = int(h["epoch"][h["test_pixel_auroc"].idxmax()])  # idxmax: the first of equal maxima, as kept
    assert result.best_epoch == best and result.selection_value == pytest.approx(h["test_pixel_auroc"].max())
    assert len(h) == min(cfg.epochs, best + cfg.patience)  # stopped after `patience` epochs without a gain
    ckpt = read_checkpoint(result.checkpoint_path, "checkpoint")
    assert ckpt["test_set_leakage"] is True and ckpt["epochs_trained"] == len(h)
    assert read_checkpoint(run.checkpoint_path, "checkpoint")["test_set_leakage"] is False
    pred = load_predictions(predict(result.checkpoint_path, tiny_mvtec, "brick", tmp_path / "leak.npz"))
    assert M.pixel_auroc(pred.maps, pred.masks(cfg.mask_rule)) == pytest.approx(result.selection_value, abs=1e-6)
    # the test images are batched without a DataLoader: the batches (hence the losses) are those of CFG
    same = fit(CFG.replace(epochs=len(h)), tiny_mvtec, "brick", tmp_path / "plain", progress=False).history
    np.testing.assert_array_equal(h["train_loss"].to_numpy(), same["train_loss"].to_numpy())
    # a finished run read back keeps the column
    assert "test_pixel_auroc" in fit(cfg, tiny_mvtec, "brick", tmp_path / "leak", progress=False).history.columns


def test_official_metrics_come_from_float64_maps(preds):
    """official upsampling: the file keeps the fused maps; the evaluation recomputes the float64 maps of
    the official code from them (the stored float32 maps are those, rounded) and computes every metric
    and image score from them."""
    import dataclasses

    from stfpm_lib import metrics as M
    from stfpm_lib.method.anomaly_map import final_map
    from stfpm_lib.records.evaluation import evaluate_predictions

    assert preds.fused_maps.dtype == np.float32 and preds.fused_maps.shape == (len(preds), 16, 16)
    full = final_map(torch.from_numpy(preds.fused_maps), preds.cfg, 64).numpy()
    assert full.dtype == np.float64
    np.testing.assert_allclose(full.astype(np.float32), preds.maps, rtol=2.5e-7, atol=0)  # rounded: <= 1 ulp
    ev = evaluate_predictions(preds)
    masks = preds.masks()
    assert ev.metrics["au_pro"] == pytest.approx(M.au_pro(full, masks), rel=1e-12)
    assert ev.metrics["pixel_auroc"] == pytest.approx(M.pixel_auroc(full, masks), rel=1e-12)
    assert ev.scores.dtype == np.float64
    np.testing.assert_allclose(ev.scores, full.max(axis=(1, 2)), rtol=1e-15)
    with pytest.raises(PredictionsError, match="fused_maps do not give the stored maps"):
        evaluate_predictions(dataclasses.replace(preds, fused_maps=preds.fused_maps * 2))
    direct = evaluate_predictions(dataclasses.replace(preds, fused_maps=None))  # a file from before: float32
    assert direct.scores.dtype == np.float32
    assert direct.metrics["au_pro"] == pytest.approx(ev.metrics["au_pro"], abs=1e-5)
