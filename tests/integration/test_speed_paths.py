"""Speed paths: teacher feature cache (exact, memory budget), mixed precision, BatchNorm folding,
uint8 input batches, and the speed benchmark's CLI. No timing assertions."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch

from stfpm_lib.config import ConfigError, STFPMConfig
from stfpm_lib.engine import device as dev
from stfpm_lib.engine.feature_cache import MIB, TeacherFeatureCache, bytes_per_image
from stfpm_lib.engine.inference import (
    load_predictions,
    predict,
    predict_batch,
    prepare_for_inference,
)
from stfpm_lib.engine.training import fit
from stfpm_lib.method.anomaly_map import anomaly_map
from stfpm_lib.method.model import FeaturePyramid, build_stfpm, fold_batchnorm

CPU = torch.device("cpu")
# tiny_mvtec: 12 train images -> 9 train (3 batches of 3: no batch of one, see feature_cache) + 3 val
CFG = STFPMConfig.from_preset("official", teacher_weights="random", image_size=64, batch_size=3, eval_batch_size=8,
                              epochs=2, selection="val_loss")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def student(result) -> dict[str, torch.Tensor]:
    return torch.load(result.checkpoint_path, weights_only=True)["student"]


def no_time(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=["epoch_time_s"])


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


@pytest.fixture(scope="module")
def reference(tiny_mvtec, tmp_path_factory):
    return fit(CFG, tiny_mvtec, "brick", tmp_path_factory.mktemp("ref"), progress=False)


# ---------------------------------------------------------------------------- teacher feature cache
def test_cache_gives_the_same_student_and_history(reference, tiny_mvtec, tmp_path):
    cached = fit(CFG.replace(cache_teacher_features=True), tiny_mvtec, "brick", tmp_path, progress=False)
    a, b = student(reference), student(cached)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    pd.testing.assert_frame_equal(no_time(reference.history), no_time(cached.history))
    assert cached.best_epoch == reference.best_epoch
    # the teacher ran once per image: epoch 1 misses, every later epoch hits (train 9, val 3 images)
    train, val = cached.teacher_cache["train"], cached.teacher_cache["val"]
    assert (train["capacity"], train["misses"], train["hits"]) == (9, 9, 9 * (CFG.epochs - 1))
    assert (val["capacity"], val["misses"], val["hits"]) == (3, 3, 3 * (CFG.epochs - 1))
    expected = (64 * 16**2 + 128 * 8**2 + 256 * 4**2) * 4  # float32 layer1..3 of a 64² input
    assert train["bytes_per_image"] == bytes_per_image("resnet18", CFG.layers, 64) == expected
    assert torch.load(cached.checkpoint_path, weights_only=True)["teacher_cache"]["train"]["hits"] == 9


def test_cache_with_a_last_batch_of_one_agrees_to_rounding(tiny_mvtec, tmp_path):
    """9 images in batches of 4 leave a batch of one, whose convolutions can round differently
    (~1e-5 relative, oneDNN) from the same image in a larger batch: agreement to rounding."""
    cfg = CFG.replace(batch_size=4)
    ref = fit(cfg, tiny_mvtec, "grass", tmp_path / "ref", progress=False)
    cached = fit(cfg.replace(cache_teacher_features=True), tiny_mvtec, "grass", tmp_path / "cache", progress=False)
    # measured 3.6e-7 on AVX-512, AVX2 and SSE kernels (weights are O(0.1..1)); SGD at lr 0.4 amplifies the
    # rounding, so the bound leaves room for other CPUs; a cache bug moves the weights by 1e-3 or more
    assert max_abs_diff(student(ref), student(cached)) < 1e-5
    np.testing.assert_allclose(cached.history["train_loss"], ref.history["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(cached.history["val_map"], ref.history["val_map"], rtol=1e-5)


def test_cached_run_resumes_to_the_uncached_result(reference, tiny_mvtec, tmp_path):
    class Interrupt(Exception):
        pass

    def stop_after_one(row):
        if row["epoch"] == 1:
            raise Interrupt

    cfg = CFG.replace(cache_teacher_features=True)
    with pytest.raises(Interrupt):
        fit(cfg, tiny_mvtec, "brick", tmp_path, progress=False, log=stop_after_one)
    resumed = fit(cfg, tiny_mvtec, "brick", tmp_path, progress=False)  # cache rebuilt in the resumed epoch
    assert resumed.resumed_from_epoch == 1
    a, b = student(reference), student(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(no_time(reference.history), no_time(resumed.history))
    # the cache settings are runtime settings: an uncached request returns the same finished run
    assert fit(CFG, tiny_mvtec, "brick", tmp_path, progress=False).best_epoch == resumed.best_epoch


def test_memory_budget_caches_what_fits_and_logs(tiny_mvtec, tmp_path, caplog):
    # layer1 of a 128² input: 64·32·32 float32 = 0.25 MiB per image -> a 1 MiB budget holds 4 of 9
    cfg = CFG.replace(image_size=128, layers=("layer1",))
    assert bytes_per_image("resnet18", cfg.layers, 128) == MIB // 4
    ref = fit(cfg, tiny_mvtec, "brick", tmp_path / "ref", progress=False)
    with caplog.at_level(logging.WARNING, logger="stfpm_lib.engine.feature_cache"):
        part = fit(cfg.replace(cache_teacher_features=True, cache_memory_mb=1), tiny_mvtec, "brick",
                   tmp_path / "part", progress=False)
    assert any("holds 4 of 9 images" in r.getMessage() for r in caplog.records)
    train, val = part.teacher_cache["train"], part.teacher_cache["val"]
    assert train["capacity"] == 4 and val["capacity"] == 0  # the validation cache gets what is left: nothing
    assert (train["hits"], train["misses"]) == (4, 9 + 5)  # epoch 2: 4 read back, 5 recomputed
    assert (val["hits"], val["misses"]) == (0, 6)
    # recomputed images run in sub-batches: equal to rounding (as in the test above: room for other CPUs)
    assert max_abs_diff(student(ref), student(part)) < 1e-5
    np.testing.assert_allclose(part.history["train_loss"], ref.history["train_loss"], rtol=1e-5)
    with pytest.raises(ConfigError, match="cache_memory_mb=-1"):  # refused before anything is written
        fit(cfg.replace(cache_teacher_features=True, cache_memory_mb=-1), tiny_mvtec, "brick", tmp_path / "neg",
            progress=False)
    assert not (tmp_path / "neg").exists()
    # a zero budget computes every batch whole: bit for bit the uncached run
    none = fit(cfg.replace(cache_teacher_features=True, cache_memory_mb=0), tiny_mvtec, "brick", tmp_path / "none",
               progress=False)
    assert none.teacher_cache["train"]["capacity"] == 0 and none.teacher_cache["train"]["hits"] == 0
    a, b = student(ref), student(none)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_images_are_decoded_once_per_run(tiny_mvtec, tmp_path, monkeypatch):
    from stfpm_lib.data import dataset

    calls: list[str] = []
    original = dataset.read_image_uint8

    def counting(path, cfg):
        calls.append(str(path))
        return original(path, cfg)

    monkeypatch.setattr(dataset, "read_image_uint8", counting)
    fit(CFG.replace(epochs=3, layers=("layer1",), cache_teacher_features=True), tiny_mvtec, "grass", tmp_path,
        progress=False)
    assert len(calls) == len(set(calls)) == 12  # 9 train + 3 validation images, each once for 3 epochs


def test_feature_cache_unit():
    calls: list[torch.Tensor] = []

    def compute(x: torch.Tensor) -> list[torch.Tensor]:
        calls.append(x.clone())
        return [x * 2, x.sum(dim=1, keepdim=True).to(torch.bfloat16)]

    x_all = torch.arange(6 * 2 * 2 * 2, dtype=torch.float32).view(6, 2, 2, 2)
    per_item = (2 * 2 * 2) * 4 + (1 * 2 * 2) * 2  # float32 layer + bfloat16 layer, bytes
    cache = TeacherFeatureCache(6, budget_mb=3.5 * per_item / MIB)
    assert cache.capacity is None  # allocated at the first call
    idx = torch.tensor([4, 0, 2])
    out = cache.features(idx, x_all[idx], compute)
    assert cache.capacity == 3 and cache.item_bytes == per_item and cache.nbytes == 3 * per_item
    assert len(calls) == 1 and torch.equal(calls[0], x_all[idx])  # whole batch computed
    idx = torch.tensor([2, 5, 0, 4])
    out = cache.features(idx, x_all[idx], compute)
    assert torch.equal(calls[1], x_all[[5, 4]])  # only the images not cached (5: beyond capacity, 4 likewise)
    for got, want in zip(out, compute(x_all[idx])):
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert (cache.hits, cache.misses) == (2, 5) and cache.n_cached == 2
    out = cache.features([0, 2], x_all[[0, 2]], compute)  # all cached: no computation
    assert len(calls) == 3  # (the reference computation above was the third call)
    assert torch.equal(out[0], x_all[[0, 2]] * 2) and cache.describe()["hits"] == 4
    with pytest.raises(ValueError, match="one index per image"):
        cache.features([0], x_all[:2], compute)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 6\)"):
        cache.features([0, 6], x_all[:2], compute)
    with pytest.raises(ValueError, match="cache_memory_mb"):
        TeacherFeatureCache(3, -1)


def test_feature_cache_keeps_channels_last():
    x = torch.randn(4, 3, 5, 5)

    def compute(batch):
        return [batch.contiguous(memory_format=torch.channels_last) * 1.0]

    cache = TeacherFeatureCache(4, budget_mb=1)
    cache.features([0, 1], x[:2], compute)
    out = cache.features([1, 0], x[[1, 0]], compute)[0]
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, x[[1, 0]])


# ---------------------------------------------------------------------------- precision and layout
def test_precision_rule(monkeypatch):
    assert dev.amp_dtype("fp32", CPU) is None and dev.amp_dtype("bf16", CPU) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16"):
        dev.amp_dtype("fp16", CPU)
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: True)
    assert dev.amp_dtype("auto", CPU) == torch.bfloat16 and dev.effective_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    assert dev.amp_dtype("auto", CPU) is None and dev.effective_precision("auto", CPU) == "fp32"
    for precision in ("fp32", "bf16", "auto"):
        assert not dev.grad_scaler(precision, CPU).is_enabled()  # only float16 needs loss scaling


def test_fast_bf16_detection(monkeypatch):
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert dev.cpu_has_fast_bf16() is False  # e.g. AVX2 only: bf16 would be emulated
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert dev.cpu_has_fast_bf16() is True
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert dev.cpu_has_fast_bf16() is True
    # oneDNN capped below bf16 (by either variable name) or absent: its bf16 convolutions are emulated
    for name, isa, fast in (("ONEDNN_MAX_CPU_ISA", "avx2", False), ("DNNL_MAX_CPU_ISA", "AVX512_CORE", False),
                            ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX", True)):
        monkeypatch.setenv(name, isa)
        assert dev.cpu_has_fast_bf16() is fast, (name, isa)
        assert dev.effective_precision("auto", CPU) == ("bf16" if fast else "fp32")
        monkeypatch.delenv(name)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert dev.cpu_has_fast_bf16() is False
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)

    def broken():
        raise RuntimeError("probe failed")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    assert dev.cpu_has_fast_bf16() is False


def test_cpu_description(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 7B13 64-Core Processor \n"
                       "flags\t\t: fpu avx2\n")
    monkeypatch.setattr(dev, "_CPUINFO", str(cpuinfo))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert dev.cpu_description() == {"model": "AMD EPYC 7B13 64-Core Processor", "capability": "AVX2",
                                     "native_bf16": False}
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: True)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # the machine's own cap must not decide the test
        monkeypatch.delenv(name, raising=False)
    assert dev.cpu_description()["capability"] == "AVX512+AMX" and dev.cpu_description()["native_bf16"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN capped below AMX: not claimed
    assert dev.cpu_description()["capability"] == "AVX512"
    monkeypatch.setattr(dev, "_CPUINFO", str(tmp_path / "missing"))
    assert dev.cpu_description()["model"]  # falls back to what platform reports


def test_auto_without_native_bf16_trains_in_fp32(reference, tiny_mvtec, tmp_path, monkeypatch):
    """precision="auto" on a CPU without native bf16 is the fp32 run, bit for bit (never emulated bf16)."""
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    auto = fit(CFG.replace(precision="auto"), tiny_mvtec, "brick", tmp_path, progress=False)
    a, b = student(reference), student(auto)
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(no_time(reference.history), no_time(auto.history))


def test_kernel_policy_restores_settings():
    before = torch.are_deterministic_algorithms_enabled()
    for precision in ("fp32", "bf16"):
        with dev.kernel_policy(CPU, precision):
            assert torch.are_deterministic_algorithms_enabled()  # CPU: deterministic whatever the precision
        assert torch.are_deterministic_algorithms_enabled() == before


def test_uint8_batches_match_per_image_normalisation():
    from torch.utils.data import default_collate

    from stfpm_lib.data.transforms import normalize

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    ref = default_collate([normalize(a) for a in arrays])  # the per-image path of ImageDataset
    batch = default_collate([torch.from_numpy(a) for a in arrays])
    for channels_last in (False, True):
        x = dev.prepare_input(batch, CPU, channels_last)
        assert torch.equal(x, ref) and x.dtype == torch.float32
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert x.is_contiguous(memory_format=fmt)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        dev.prepare_input(batch.permute(0, 3, 1, 2), CPU)


def test_tune_cpu_allocator_opt_out(monkeypatch):
    assert dev.tune_cpu_allocator() in (True, False)
    assert dev.tune_cpu_allocator() == dev.tune_cpu_allocator()  # applied once
    monkeypatch.setattr(dev, "_allocator_tuned", None)
    monkeypatch.setenv("STFPM_CPU_ALLOCATOR", "default")
    assert dev.tune_cpu_allocator() is False


def _randomise_bn(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_fold_batchnorm_keeps_the_features(backbone):
    torch.manual_seed(0)
    pyramid = FeaturePyramid(backbone, ("layer1", "layer2", "layer3")).eval()
    _randomise_bn(pyramid, 1)
    before = {k: v.clone() for k, v in pyramid.state_dict().items()}
    folded = fold_batchnorm(pyramid)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert folded.train().training is False and not any(p.requires_grad for p in folded.parameters())
    assert all(torch.equal(before[k], v) for k, v in pyramid.state_dict().items())  # original untouched
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for a, b in zip(pyramid(x), folded(x)):
            # float32: folding reorders one multiply-add per channel, ~1e-6 relative
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_bf16_inference_stays_close_to_fp32():
    """bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2%) at each of the ~15
    convolution/BatchNorm stages, and maps are formed in float32 from the features: the
    maps should agree to about 1% of their scale (0.34% measured on 256² in the benchmark)."""
    cfg = CFG.replace(precision="bf16", channels_last=True)
    model = build_stfpm(CFG)
    _randomise_bn(model.teacher, 3)
    with torch.no_grad():
        for p in model.student.parameters():  # a student that differs from its init, and from the teacher
            p.mul_(1.05)
    x = (torch.rand(4, 64, 64, 3, generator=torch.Generator().manual_seed(4)) * 255).to(torch.uint8)
    with torch.inference_mode():
        ref, ref_scores = predict_batch(prepare_for_inference(model, CFG, CPU), x, CFG, CPU)
        fast_model = prepare_for_inference(model, cfg, CPU)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast_model.modules())  # folded copy
        got, scores = predict_batch(fast_model, x, cfg, CPU)
        # fp32 path = the plain model: identical to computing the map directly
        t, s = model.eval()(dev.prepare_input(x, CPU))
        torch.testing.assert_close(ref, anomaly_map(t, s, CFG, 64), rtol=0, atol=0)
    # official upsampling: the final resize is float64 in both precisions (the networks' precision differs)
    assert got.dtype == ref.dtype == torch.float64 and got.shape == ref.shape == (4, 64, 64)
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) < 3e-2 * scale
    assert float((got - ref).norm() / ref.norm()) < 1e-2
    np.testing.assert_allclose(scores.numpy(), ref_scores.numpy(), rtol=2e-2)


def test_fast_fit_and_predict_override(reference, tiny_mvtec, tmp_path):
    fast = CFG.replace(precision="bf16", channels_last=True, cache_teacher_features=True)
    res = fit(fast, tiny_mvtec, "brick", tmp_path / "fast", progress=False)
    assert np.isfinite(res.history[["train_loss", "val_loss", "val_map"]].to_numpy()).all()
    # bf16 autocast: same losses to ~2 significant digits (the loss itself is computed in float32)
    np.testing.assert_allclose(res.history["train_loss"], reference.history["train_loss"], rtol=5e-2)
    # one fp32-trained student, predicted in fp32 and in bf16 + channels_last
    a = load_predictions(predict(reference.checkpoint_path, tiny_mvtec, "brick", tmp_path / "a.npz",
                                 maps_dtype="float32"))
    b = load_predictions(predict(reference.checkpoint_path, tiny_mvtec, "brick", tmp_path / "b.npz",
                                 maps_dtype="float32", precision="bf16", channels_last=True))
    assert (a.meta["precision"], b.meta["precision"], b.meta["channels_last"]) == ("fp32", "bf16", True)
    assert b.config == a.config == CFG.to_dict()  # the training config is what is recorded
    assert float(np.abs(b.maps - a.maps).max()) < 3e-2 * float(np.abs(a.maps).max())
    np.testing.assert_allclose(b.scores, a.scores, rtol=3e-2)
    with pytest.raises(ConfigError, match="fp16"):
        predict(reference.checkpoint_path, tiny_mvtec, "brick", tmp_path / "c.npz", precision="fp16", device="cpu")


# ---------------------------------------------------------------------------- benchmark
def test_official_baseline_computes_the_official_quantities():
    """The benchmark's official-equivalent loop (layer4 kept) gives the project's fp32 loss and maps."""
    from stfpm_lib.bench.official_recipe import official_infer, official_pyramid
    from stfpm_lib.method.loss import stfpm_loss

    torch.manual_seed(0)
    teacher, student_net = official_pyramid().eval(), official_pyramid().eval()
    model = build_stfpm(CFG).eval()
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    for ours, official in ((model.teacher, teacher), (model.student, student_net)):
        mapped = {f"model.{names.index(k.split('.')[0])}.{k.split('.', 1)[1]}": v for k, v in ours.state_dict().items()}
        missing = official.load_state_dict(mapped, strict=False).missing_keys
        assert all(k.startswith("model.7.") for k in missing)  # only layer4, which the project never builds
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        t, s = model(x)
        ot, os_ = teacher(x), student_net(x)
        for a, b in zip(t + s, ot + os_):
            assert torch.equal(a, b)
        norm = torch.nn.functional.normalize
        official_loss = sum(torch.sum((norm(a, dim=1) - norm(b, dim=1)) ** 2, 1).mean() for a, b in zip(ot, os_))
        # two float32 reductions in different orders: worst case ~1.3e-6 relative (measured <= 1.4e-7)
        torch.testing.assert_close(official_loss, stfpm_loss(t, s), rtol=1e-5, atol=0)
        maps, scores = official_infer(teacher, student_net, [x[:1], x[1:]], CPU, 64)
    ref = anomaly_map(t, s, CFG, 64).numpy()
    np.testing.assert_allclose(maps, ref, rtol=1e-5, atol=1e-7 * float(np.abs(ref).max()))
    np.testing.assert_allclose(scores, ref.max(axis=(1, 2)), rtol=1e-5)


# seconds per epoch/pass that the quick benchmark test substitutes for the measured ones (4 training
# and 2 inference images): every printed figure then follows from these, on any machine
FAKE_TRAIN_S = {"official": 0.8, "project fp32": 0.4, "project fast": 0.5, "project bf16": 1.6}
FAKE_INFER_S = {"official": 0.5, "project fp32": 0.2, "project fast": 0.1, "project bf16": 1.0}


def test_speed_bench_quick_prints_the_last_line(capsys, monkeypatch):
    """The quick benchmark runs every variant for real; its timings are replaced by fixed ones so
    that the figures it prints are checked exactly (no dependence on the machine's speed), and
    the capability probe is fixed to "no native bf16" (no dependence on the instruction set)."""
    from stfpm_lib.bench import speed_bench as sb
    from stfpm_lib.bench.__main__ import main

    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    for method, fake in (("train", FAKE_TRAIN_S), ("infer", FAKE_INFER_S)):
        def timed(self, n, _orig=getattr(sb._Runner, method), _fake=fake):  # noqa: B008 - binds this loop's method
            run = _orig(self, n)  # the real work runs; only its duration is replaced
            return {**run, "s": _fake[self.variant]}
        monkeypatch.setattr(sb._Runner, method, timed)

    assert main(["speed", "--quick", "--threads", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    text = "\n".join(out)
    hw = sb._hardware(CPU)  # with the probe fixed: "<model> [<capability>, bf16 emulated]"
    assert hw["bf16"] == "emulated" and hw["tag"] == f"{hw['model']} [{hw['capability']}, bf16 emulated]"
    assert "precision='auto' resolves to fp32 here" in text
    # the headline fast path is what precision="auto" gives here (fp32); bf16 is an extra row, marked emulated
    rows = {name: [line for line in out if line.startswith(f"  {name} ")] for name in
            ("official", "project fp32", "project fast (fp32)", "project bf16 (bf16 emulated)")}
    assert all(len(r) == 3 for r in rows.values()), rows  # training, inference and scaling tables
    for section in ("--- training", "--- inference", "--- scaling", "--- memory", "--- fidelity", "--- targets"):
        header = [line for line in out if line.startswith(section)]
        assert len(header) == 1 and hw["tag"] in header[0]  # every figure names the CPU it came from
    # 4 images: official 0.8 s = 5.0 img/s, fast 0.5 s = 8.0 img/s (x1.600), bf16 1.6 s (x0.500);
    # 2 inference images: official 0.5 s = 4.0 img/s, fast 0.1 s = 20.0 img/s (x5.000)
    table = {}
    for name, (train, infer, _) in rows.items():
        table[name] = [re.search(r"([\d.]+) img/s +x([\d.]+) ", line).groups() for line in (train, infer)]
    assert table["official"] == [("5.0", "1.000"), ("4.0", "1.000")]
    assert table["project fp32"] == [("10.0", "2.000"), ("10.0", "2.500")]
    assert table["project fast (fp32)"] == [("8.0", "1.600"), ("20.0", "5.000")]
    assert table["project bf16 (bf16 emulated)"] == [("2.5", "0.500"), ("2.0", "0.500")]
    # targets without native bf16: training >= 2, inference >= 2.5
    assert "training x1.600 (target >= 2): NOT met; inference x5.000 (target >= 2.5): met" in text
    # the last line repeats what the tables printed, and names the CPU
    last = out[-1]
    pattern = (r"train_speedup=(\S+) infer_speedup=(\S+) train_img_s=(\S+) infer_img_s=(\S+) auroc_delta=(\S+) "
               r"device=cpu precision=fp32 capability=(\S+) bf16=emulated model=(.+)")
    m = re.fullmatch(pattern, last)
    assert m, last
    assert m.groups()[:4] == ("1.600", "5.000", "8.0", "20.0")
    assert 0 <= float(m.group(5)) <= 1
    assert (m.group(6), m.group(7)) == (hw["capability"], hw["model"])


def test_speed_bench_follows_the_precision_rule(monkeypatch):
    """With native bf16 the fast path is bf16 (no extra row, targets x4 / x6); without, fp32."""
    from stfpm_lib.bench import speed_bench as sb

    for native, fast, labels, targets in (
            (True, "bf16", ("project fast (bf16)",), (4, 6)),
            (False, "fp32", ("project fast (fp32)", "project bf16 (bf16 emulated)"), (2, 2.5))):
        monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda native=native: native)
        hw = sb._hardware(CPU)
        assert hw["bf16"] == ("native" if native else "emulated")
        setup = sb._Setup(device=CPU, size=32, batch=2, eval_batch=2, fast_precision="auto",
                          with_bf16=dev.effective_precision("auto", CPU) != "bf16")
        assert sb._project_cfg(setup, "project fast").precision == "auto"  # as a user configures it
        assert dev.effective_precision("auto", CPU) == fast
        assert tuple(sb._label(setup, v, hw) for v in setup.variants[2:]) == labels
        result = {"train_speedup": f"{targets[0]:.3f}", "infer_speedup": f"{targets[1] - 0.001:.3f}"}
        assert [line.endswith(" met") and "NOT" not in line for line in sb._targets(result, CPU, hw)] == [True, False]


def test_speed_bench_rejects_bad_arguments(capsys):
    from stfpm_lib.bench.speed_bench import main

    assert main(["--images", "0"]) == 2
    assert main(["--scaling", "a,b"]) == 2
    assert "must be" in capsys.readouterr().err
    assert main(["--device", "cpu", "--precision", "fp16"]) == 2  # refused before anything is timed
    assert "fp16" in capsys.readouterr().err
