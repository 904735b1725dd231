"""``python -m stfpm_lib.bench speed``: training and inference speed against the official recipe.

In one run on one machine it times three variants (four with ``--with-bf16``), each in its
own (spawned) process, called one at a time and interleaved round by round; the best of
``--rounds`` counts, so that load from other processes inflates neither side:

* ``official``: a loop equivalent to the official code (gdwang08/STFPM; :mod:`stfpm_lib.bench.official_recipe`):
  torchvision ``resnet18`` ``children()[:-2]`` for teacher and student (layer4 kept and
  run), fp32, NCHW, in-memory PIL images through ``Resize → ToTensor → Normalize`` per
  item, teacher under ``no_grad``, per-batch ``F.normalize`` loss with ``loss.item()``,
  SGD(0.4, 0.9, 1e-4), batch 32; inference one image at a time in fp32: per-layer maps to
  64², product, to NumPy, then bilinear to the input size (cv2 ``INTER_LINEAR``), score =
  max. Default allocator, default cuDNN settings, as the official code.
* ``project fp32``: this package with its faithful defaults (fp32, NCHW, no cache): layer4
  neither built nor run, uint8 batches normalised on the device, batched inference, and on
  CPU the allocator setting that ``fit``/``predict`` apply
  (:func:`stfpm_lib.engine.device.tune_cpu_allocator`).
* ``project fast``: what a user gets with ``precision="auto"`` (or ``--precision``) on this
  machine: bf16 on CPUs with native bf16 (AVX512-BF16 or AMX) and on bf16 GPUs, fp16 on other
  GPUs, fp32 on other CPUs (:func:`stfpm_lib.engine.device.amp_dtype`); plus ``channels_last``, the
  teacher feature cache, and for inference batches (``--eval-batch``) under ``inference_mode``
  (BatchNorm-folded networks under mixed precision; cuDNN autotuning on CUDA). Training runs
  :func:`stfpm_lib.engine.training.train_epoch` and inference :func:`stfpm_lib.engine.inference.predict_batch`,
  the code of ``fit`` and ``predict``.
* ``project bf16`` (only with ``--with-bf16``, when the fast path is not bf16 already): the fast
  settings in bf16, labelled "emulated" on CPUs without native bf16 (there it is slower than fp32,
  which is why ``auto`` does not pick it).

Every section names the hardware its figures come from: CPU model, PyTorch's CPU capability
(``AVX2``, ``AVX512``, ``+AMX``) and whether bf16 is native or emulated
(:func:`stfpm_lib.engine.device.cpu_description`), or the GPU.

Images are synthetic (random crops of a CC0 texture, ``--size`` × ``--size`` pixels, held in memory as
uint8); decoding files is not timed (the official code holds its images in memory too).
The fast training speed is that of a cached (steady-state) epoch; the first epoch, which
runs the teacher and fills the cache, is printed and added in the extrapolation.

Also printed: seconds per epoch against the number of images (``--scaling``) with a linear
fit extrapolated to a full MVTec category (200 and 400 training images × ``--full-epochs``),
memory (peak RSS of each variant's process on CPU, peak allocated on CUDA) with an estimate
for a full category, and a fidelity check on a small synthetic MVTec-layout category
(:func:`stfpm_lib.data.make_synthetic_category`, ``fit``/``predict``, random teacher):

* inference-only: one fp32-trained student predicted in fp32 and with the fast settings;
* end to end: students trained from the same seed in fp32 and with the fast settings, each
  predicted in its own settings; a control run (fp32 with channels_last only) shows how far
  a mere rounding change moves a short training run.

``auroc_delta`` is the larger of the two ``|Δ|`` (image and pixel AUROC). The last line is
machine-readable (one line, wrapped here)::

    train_speedup=<x> infer_speedup=<x> train_img_s=<n> infer_img_s=<n> auroc_delta=<d> device=<cpu|cuda>
    precision=<fast path's precision> capability=<AVX2|AVX512|...|cuda> bf16=<native|emulated|none> model=<name>

(speed-ups of ``project fast`` over ``official``, printed as in the tables; the CPU or GPU model
name, which may contain spaces, comes last; with CUDA present and ``--device auto``
both devices are measured, one such line each, CUDA last). ``--quick`` runs tiny sizes in
one process in a few seconds (checks that everything runs; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stfpm_lib.bench.official_recipe import (
    OfficialDataset,
    official_infer,
    official_pyramid,
    official_train_epoch,
)
from stfpm_lib.config import DEVICE_CHOICES, PRECISIONS, ConfigError, STFPMConfig

# Besides the config (NumPy and PyYAML only), stfpm_lib (engine, method, data: pandas, tqdm, ...) and
# torchvision (~3 s, torch._dynamo) are imported inside the functions that use them ("lazy" below): every
# variant's spawned process imports this module, and the official variant's memory figure must hold only
# what the official code loads.

__all__ = ["main"]

MVTEC_TRAIN_IMAGES = (200, 400)  # range of train/good counts per MVTec AD category (60..391)


# ============================================================================ measuring
class _PeakRSS:
    """Peak resident memory of this process while inside (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _PeakRSS:
        self.start = self.peak = _rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    """Current resident set size in bytes (Linux ``/proc``; else the peak so far)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _max_rss()


def _max_rss() -> int:
    """Peak resident set size of this process so far, bytes."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measure(device: torch.device, fn: Callable[[], Any]) -> dict[str, float]:
    """Run ``fn`` once: wall seconds (CUDA synchronised), peak memory during it and its growth.

    Memory: CPU, the process's resident set (sampled); CUDA, ``max_memory_allocated``.
    """
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with _PeakRSS() as rss:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        dt = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        return {"s": dt, "peak": peak, "grow": peak - base, "rss": _max_rss()}
    return {"s": dt, "peak": rss.peak, "grow": rss.peak - rss.start, "rss": _max_rss()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


# ============================================================================ data
def _synthetic_images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` RGB uint8 (size, size, 3) random crops of the CC0 ``brick`` texture (tiled if small)."""
    from stfpm_lib.data.synthetic import load_texture  # lazy: see the note above the imports

    texture = load_texture("brick")
    reps = (math.ceil(2 * size / texture.shape[0]), math.ceil(2 * size / texture.shape[1]))
    texture = np.tile(texture, reps)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = int(rng.integers(0, texture.shape[0] - size + 1))
        x = int(rng.integers(0, texture.shape[1] - size + 1))
        gray = texture[y:y + size, x:x + size].astype(np.int16)
        tint = rng.integers(-20, 21, size=3)
        out.append(np.clip(gray[..., None] + tint, 0, 255).astype(np.uint8))
    return out


class _ArrayImages:
    """Minimal stand-in for :class:`~stfpm_lib.data.ImageDataset` over in-memory uint8 arrays."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.images = arrays
        self.mask = np.zeros(arrays[0].shape[:2], dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[i], self.mask


# ============================================================================ the variants
@dataclass
class _Setup:
    device: torch.device
    size: int
    batch: int
    eval_batch: int
    fast_precision: str
    seed: int = 0
    with_bf16: bool = False  # also time the fast settings with precision bf16 ("project bf16")

    @property
    def variants(self) -> tuple[str, ...]:
        return VARIANTS + (("project bf16",) if self.with_bf16 else ())


def _variant_precision(setup: _Setup, variant: str) -> str:
    """The ``precision`` a project variant is configured with (``project fast``: as asked, ``auto`` by default)."""
    return {"project fp32": "fp32", "project fast": setup.fast_precision, "project bf16": "bf16"}[variant]


def _project_cfg(setup: _Setup, variant: str):
    """The config of a project variant: the ``official`` preset, plus for ``project fast`` and
    ``project bf16`` the speed settings (precision, channels_last, teacher feature cache)."""
    extra = {} if variant == "project fp32" else \
        {"precision": _variant_precision(setup, variant), "channels_last": True, "cache_teacher_features": True}
    return STFPMConfig.from_preset("official", teacher_weights="random", image_size=setup.size,
                                   batch_size=setup.batch, eval_batch_size=setup.eval_batch,
                                   device=setup.device.type, seed=setup.seed, **extra)


class _ProjectTrainer:
    """The project's training step functions on in-memory images (one cache per image set)."""

    def __init__(self, setup: _Setup, variant: str) -> None:
        from stfpm_lib.engine.device import grad_scaler, prepare_model  # lazy: see the note above the imports
        from stfpm_lib.method.model import build_stfpm

        self.setup = setup
        self.cfg = _project_cfg(setup, variant)
        self.model = prepare_model(build_stfpm(self.cfg), setup.device, self.cfg.channels_last)
        self.optimizer = torch.optim.SGD(self.model.student.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum,
                                         weight_decay=self.cfg.weight_decay)
        self.scaler = grad_scaler(self.cfg.precision, setup.device)
        self.caches: dict[int, Any] = {}

    def loader(self, arrays: list[np.ndarray]):
        from stfpm_lib.engine.training import IndexedImages  # lazy: see the note above the imports

        return torch.utils.data.DataLoader(IndexedImages(_ArrayImages(arrays)), batch_size=self.cfg.batch_size,
                                           shuffle=True, generator=torch.Generator().manual_seed(self.setup.seed),
                                           pin_memory=self.setup.device.type == "cuda")

    def epoch(self, key: int, loader) -> float:
        from stfpm_lib.engine.device import kernel_policy  # lazy: see the note above the imports
        from stfpm_lib.engine.feature_cache import TeacherFeatureCache
        from stfpm_lib.engine.training import train_epoch

        cache = None
        if self.cfg.cache_teacher_features:
            cache = self.caches.setdefault(key, TeacherFeatureCache(len(loader.dataset), self.cfg.cache_memory_mb))
        with kernel_policy(self.setup.device, self.cfg.precision):
            return train_epoch(self.model, self.optimizer, self.scaler, loader, self.cfg, self.setup.device,
                               cache=cache)


class _OfficialTrainer:
    def __init__(self, setup: _Setup) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(setup.seed)
            self.teacher = official_pyramid().to(setup.device)
            self.student = official_pyramid().to(setup.device)
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.4, momentum=0.9, weight_decay=1e-4)
        self.setup = setup

    def loader(self, arrays: list[np.ndarray]):
        return torch.utils.data.DataLoader(OfficialDataset(arrays, self.setup.size), batch_size=32, shuffle=True,
                                           drop_last=False)

    def epoch(self, key: int, loader) -> float:
        return official_train_epoch(self.teacher, self.student, self.optimizer, loader, self.setup.device)


def _project_inferencer(setup: _Setup, variant: str, arrays: list[np.ndarray]) -> Callable[[], np.ndarray]:
    from stfpm_lib.engine.device import kernel_policy  # lazy: see the note above the imports
    from stfpm_lib.engine.inference import predict_batch, prepare_for_inference
    from stfpm_lib.method.model import build_stfpm

    cfg = _project_cfg(setup, variant)
    model = prepare_for_inference(build_stfpm(cfg), cfg, setup.device)
    images = torch.from_numpy(np.stack(arrays))
    if setup.device.type == "cuda":
        images = images.pin_memory()
    bs = cfg.eval_batch_size

    def run() -> np.ndarray:
        scores = []
        with torch.inference_mode(), kernel_policy(setup.device, cfg.precision):
            for i in range(0, len(images), bs):  # as predict: maps and scores back to the host
                maps, score = predict_batch(model, images[i:i + bs], cfg, setup.device)
                maps.to(torch.float16).cpu().numpy()
                scores.append(score.cpu().numpy())
        return np.concatenate(scores)

    return run


def _official_inferencer(setup: _Setup, arrays: list[np.ndarray]) -> Callable[[], np.ndarray]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)
        teacher, student = official_pyramid().to(setup.device), official_pyramid().to(setup.device)
    loader = torch.utils.data.DataLoader(OfficialDataset(arrays, setup.size), batch_size=1, shuffle=False)
    return lambda: official_infer(teacher, student, loader, setup.device, setup.size)


# ============================================================================ runners (one per variant)
VARIANTS = ("official", "project fp32", "project fast")  # "project bf16" too with --with-bf16


class _Runner:
    """Training epochs and inference passes of one variant, timed where they run."""

    def __init__(self, variant: str, setup: _Setup) -> None:
        if variant not in setup.variants:
            raise ValueError(f"variant={variant!r} is not one of {list(setup.variants)}")
        self.variant, self.setup = variant, setup
        self.trainer = _OfficialTrainer(setup) if variant == "official" else \
            _ProjectTrainer(setup, variant)
        self.loaders: dict[int, Any] = {}
        self.inferencers: dict[int, Callable[[], Any]] = {}

    def _inferencer(self, n: int) -> Callable[[], Any]:
        if n not in self.inferencers:
            arrays = _synthetic_images(n, self.setup.size, seed=7 + n)
            self.inferencers[n] = _official_inferencer(self.setup, arrays) if self.variant == "official" else \
                _project_inferencer(self.setup, self.variant, arrays)
        return self.inferencers[n]

    def warmup(self) -> None:
        """Kernel selection and first allocations, on a separate tiny set (not timed)."""
        warm = _synthetic_images(min(self.setup.batch, 4), self.setup.size, seed=1)
        self.trainer.epoch(-1, self.trainer.loader(warm))
        self._inferencer(min(self.setup.eval_batch, 4))()

    def train(self, n: int) -> dict[str, float]:
        """One training epoch over ``n`` images (the first one of ``n`` fills the fast path's cache)."""
        if n not in self.loaders:
            self.loaders[n] = self.trainer.loader(_synthetic_images(n, self.setup.size, seed=100 + n))
        return _measure(self.setup.device, lambda: self.trainer.epoch(n, self.loaders[n]))

    def infer(self, n: int) -> dict[str, float]:
        """One inference pass over ``n`` images (maps and scores back on the host)."""
        fn = self._inferencer(n)
        return _measure(self.setup.device, fn)

    def cache_bytes_per_image(self) -> int | None:
        caches = getattr(self.trainer, "caches", {})
        sizes = [c.item_bytes for c in caches.values() if c.item_bytes]
        return sizes[0] if sizes else None


def _worker_main(conn, variant: str, setup: _Setup, threads: int, tune: bool) -> None:
    """Body of a variant's process: build the runner, then serve ``(method, args)`` calls."""
    try:
        torch.set_num_threads(threads)
        if tune:
            from stfpm_lib.engine.device import tune_cpu_allocator  # lazy: see the note above the imports

            tune_cpu_allocator()
        runner = _Runner(variant, setup)
        conn.send(("ok", None))
        while True:
            method, args = conn.recv()
            if method == "stop":
                break
            conn.send(("ok", getattr(runner, method)(*args)))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _Remote:
    """A :class:`_Runner` in its own process (spawned), so that each variant has its own
    allocator state and memory figures; the parent calls one at a time (no overlap)."""

    def __init__(self, variant: str, setup: _Setup, threads: int, tune: bool) -> None:
        ctx = mp.get_context("spawn")
        self.variant = variant
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, variant, setup, threads, tune), daemon=True,
                                name=f"stfpm-speed-{variant.replace(' ', '-')}")
        self.proc.start()
        child.close()

    def ready(self) -> None:
        self._answer()

    def _answer(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"the {self.variant!r} benchmark process died (exit code {self.proc.exitcode})") from exc
        if status != "ok":
            raise RuntimeError(f"the {self.variant!r} benchmark process failed:\n{value}")
        return value

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any) -> Any:
            self.conn.send((method, args))
            return self._answer()

        return call

    def close(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(("stop", ()))
            self.proc.join(timeout=30)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(timeout=5)
        self.conn.close()


@contextlib.contextmanager
def _runners(setup: _Setup, in_process: bool, threads: int) -> Iterator[dict[str, Any]]:
    """The three variants: each in its own process (default) or all in this one.

    In separate processes the project's variants use the allocator setting that ``fit`` and
    ``predict`` apply on CPU (:func:`stfpm_lib.engine.device.tune_cpu_allocator`) and the official
    one the default allocator, as the official code. In-process, nothing is tuned.
    """
    if in_process:
        yield {v: _Runner(v, setup) for v in setup.variants}
        return
    tune = setup.device.type == "cpu"
    remotes = {v: _Remote(v, setup, threads, tune and v != "official") for v in setup.variants}
    try:
        for r in remotes.values():
            r.ready()
        yield remotes
    finally:
        for r in remotes.values():
            r.close()


# ============================================================================ sections
@dataclass
class _Results:
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def add(self, key: str, run: dict[str, float]) -> None:
        self.runs.setdefault(key, []).append(run)

    def best(self, key: str) -> float:
        return min(r["s"] for r in self.runs[key])

    def median(self, key: str) -> float:
        return float(np.median([r["s"] for r in self.runs[key]]))

    def peak(self, key: str) -> int:
        return max(r["peak"] for r in self.runs[key])

    def grow(self, key: str) -> int:
        return max(r["grow"] for r in self.runs[key])


def _bench(setup: _Setup, counts: list[int], n_infer: int, rounds: int, in_process: bool, threads: int,
           say) -> tuple[_Results, dict[str, Any]]:
    """Inference, then training, of the three variants, interleaved round by round (after
    one untimed pass of each variant over each image set)."""
    res = _Results()
    with _runners(setup, in_process, threads) as runners:
        for runner in runners.values():
            runner.warmup()
            runner.infer(n_infer)
        for r in range(rounds):
            for name, runner in runners.items():
                res.add(f"infer {name}", runner.infer(n_infer))
            say(f"  inference round {r + 1}/{rounds}: " + ", ".join(
                f"{name} {res.runs[f'infer {name}'][-1]['s']:.2f}s" for name in runners))
        for n in counts:  # an untimed first epoch per set warms every variant up at its real batch shapes;
            for name, runner in runners.items():  # the fast path's (which fills its cache) is reported
                run = runner.train(n)
                if name == "project fast":
                    res.add(f"first n={n}", run)
        for r in range(rounds):
            for n in counts:
                for name, runner in runners.items():
                    res.add(f"train {name} n={n}", runner.train(n))
            say(f"  training round {r + 1}/{rounds} (n={counts[-1]}): " + ", ".join(
                f"{name} {res.runs[f'train {name} n={counts[-1]}'][-1]['s']:.2f}s" for name in runners))
        info = {"cache_bytes_per_image": runners["project fast"].cache_bytes_per_image(),
                "process_rss": {name: res.runs[f"train {name} n={counts[-1]}"][-1]["rss"] for name in runners}}
    return res, info


def _bench_fidelity(setup: _Setup, args) -> dict[str, Any]:
    """AUROC of the fast path vs fp32 on a synthetic category (inference-only and end to end)."""
    from stfpm_lib.data import make_synthetic_category  # lazy: see the note above the imports
    from stfpm_lib.engine.inference import load_predictions, predict
    from stfpm_lib.engine.training import fit
    from stfpm_lib.metrics import image_auroc, pixel_auroc

    with tempfile.TemporaryDirectory(prefix="stfpm_speed_") as tmp:
        root = Path(tmp) / "data"
        make_synthetic_category(root, "bench", texture="brick", n_train=args.fid_train, n_test_good=args.fid_test_good,
                                defect_types=("scratch", "blob", "patch"), n_per_defect=args.fid_per_defect,
                                size=setup.size, seed=setup.seed)
        common = {"epochs": args.fid_epochs, "batch_size": args.fid_batch, "selection": "last"}
        cfgs = {"fp32": _project_cfg(setup, "project fp32").replace(**common),
                "fast": _project_cfg(setup, "project fast").replace(**common)}
        cfgs["fp32 channels_last"] = cfgs["fp32"].replace(channels_last=True)  # control: rounding only
        fits, seconds = {}, {}
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            fits[name] = fit(cfg, root, "bench", Path(tmp) / name.replace(" ", "_"), progress=False)
            seconds[name] = time.perf_counter() - t0

        def evaluate(name: str, **overrides) -> dict[str, Any]:
            out = Path(tmp) / f"{name.replace(' ', '_')}_{len(overrides)}.npz"
            path = predict(fits[name].checkpoint_path, root, "bench", out, maps_dtype="float32", **overrides)
            p = load_predictions(path)
            return {"image": image_auroc(p.scores, p.labels), "pixel": pixel_auroc(p.maps, p.masks()),
                    "maps": p.maps, "scores": p.scores, "n": len(p)}

        rows = {"fp32 train, fp32 inference": evaluate("fp32"),
                "fp32 train, fast inference": evaluate("fp32", precision=cfgs["fast"].precision, channels_last=True),
                "fast train, fast inference": evaluate("fast"),
                "fp32 channels_last train+inf.": evaluate("fp32 channels_last")}

    def delta(a: dict, b: dict) -> float:
        return max(abs(a["image"] - b["image"]), abs(a["pixel"] - b["pixel"]))

    ref, inf = rows["fp32 train, fp32 inference"], rows["fp32 train, fast inference"]
    return {
        "rows": rows, "seconds": seconds, "n_test": ref["n"],
        "infer_delta": delta(inf, ref),
        "e2e_delta": delta(rows["fast train, fast inference"], ref),
        "control_delta": delta(rows["fp32 channels_last train+inf."], ref),
        "map_rel_diff": float(np.abs(inf["maps"] - ref["maps"]).max() / max(float(np.abs(ref["maps"]).max()), 1e-30)),
        "score_rel_diff": float(np.max(np.abs(inf["scores"] - ref["scores"]) /
                                       np.maximum(np.abs(ref["scores"]), 1e-30))),
        "loss": {name: float(f.history["train_loss"].iloc[-1]) for name, f in fits.items()},
    }


# ============================================================================ report
def _fit_line(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b·x``."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def _hardware(device: torch.device) -> dict[str, str]:
    """Where figures come from: ``{"model", "capability", "bf16", "tag"}`` (``tag``: one line for the report).

    CPU: model name, PyTorch's CPU capability (AVX2, AVX512, +AMX) and whether bf16 is native
    or emulated; CUDA: the GPU's name (the host CPU in ``tag`` too).
    """
    from stfpm_lib.engine.device import cpu_description  # lazy: see the note above the imports

    cpu = cpu_description()
    bf16 = "native" if cpu["native_bf16"] else "emulated"
    cpu_tag = f"{cpu['model']} [{cpu['capability']}, bf16 {bf16}]"
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        return {"model": gpu, "capability": "cuda", "bf16": "native" if torch.cuda.is_bf16_supported() else "none",
                "tag": f"{gpu} (host CPU {cpu_tag})"}
    return {"model": cpu["model"], "capability": cpu["capability"], "bf16": bf16, "tag": cpu_tag}


def _label(setup: _Setup, variant: str, hw: dict[str, str]) -> str:
    """Row label: the variant, with the precision ``project fast`` runs in and "emulated" for emulated bf16."""
    from stfpm_lib.engine.device import effective_precision  # lazy: see the note above the imports

    if variant not in ("project fast", "project bf16"):
        return variant
    precision = effective_precision(_variant_precision(setup, variant), setup.device)
    emulated = " emulated" if precision == "bf16" and hw["bf16"] != "native" else ""
    return f"{variant} ({precision}{emulated})"


def _speed_table(setup: _Setup, res: _Results, keys: dict[str, str], n: int, hw: dict[str, str], mem: str,
                 title: str, say) -> dict[str, float]:
    """One table (training or inference): a row per variant; returns img/s per variant."""
    say(f"\n--- {title} on {hw['tag']}: best / median s, img/s, speed-up, {mem}")
    ips = {name: n / res.best(key) for name, key in keys.items()}
    for name, key in keys.items():
        say(f"  {_label(setup, name, hw):29s} {res.best(key):7.2f} / {res.median(key):6.2f} s {ips[name]:7.1f} img/s  "
            f"x{_speedup(ips[name], ips['official'])}   {_mib(res.peak(key))} (+{_mib(res.grow(key))})")
    return ips


def _speedup(rate: float, official: float) -> str:
    """The printed speed-up (the table and the last line print the same string)."""
    return f"{rate / official:.3f}"


def _report_device(setup: _Setup, args, say) -> dict[str, Any]:
    from stfpm_lib.engine.device import effective_precision  # lazy: see the note above the imports
    from stfpm_lib.engine.feature_cache import MIB

    dev, hw = setup.device, _hardware(setup.device)
    auto = effective_precision("auto", dev)
    say(f"\n=== device: {dev.type}: {hw['tag']}, {args.threads} threads; precision='auto' resolves to {auto} here")
    say(f"project fast = what fit/predict run with precision={setup.fast_precision!r} "
        f"(-> {effective_precision(setup.fast_precision, dev)}), channels_last, the teacher feature cache and "
        f"batched inference" + ("; project bf16 = the same in bf16" if setup.with_bf16 else ""))
    factor = args.gpu_factor if dev.type == "cuda" else 1  # a GPU epoch over 64 images is too short to time
    counts = sorted({c * factor for c in args.scaling + [args.images]})
    n_infer = args.infer_images * factor
    mode = "all variants in this process, allocator not tuned" if args.in_process else \
        "one process per variant; project processes with the allocator setting of fit/predict" + \
        (" (CPU)" if dev.type == "cpu" else " (CPU only: none here)")
    say(f"training {counts} images and inference {n_infer} images, {setup.size}², batch {setup.batch} "
        f"(official inference batch 1, project {setup.eval_batch}); best of {args.rounds} interleaved rounds; {mode}")
    res, info = _bench(setup, counts, n_infer, args.rounds, args.in_process, args.threads, say)
    n = counts[-1]
    mem = "peak CUDA memory allocated (growth in the phase)" if dev.type == "cuda" else \
        "peak RSS of the variant's process (growth in the phase)"

    train_ips = _speed_table(setup, res, {v: f"train {v} n={n}" for v in setup.variants}, n, hw, mem,
                             f"training, {n} images, one epoch", say)
    first = res.best(f"first n={n}")
    per_image = info["cache_bytes_per_image"] or 0
    say(f"  project fast, first epoch (teacher runs and fills the cache): {first:.2f} s = {n / first:.1f} img/s; "
        f"cache {per_image / MIB:.3f} MiB/image")
    infer_ips = _speed_table(setup, res, {v: f"infer {v}" for v in setup.variants}, n_infer, hw, mem,
                             f"inference, {n_infer} images (maps and scores back on the host)", say)
    _report_scaling(setup, res, counts, first, args.full_epochs, hw, say)
    _report_memory(setup, res, n, per_image, hw, say)

    result = {"device": dev.type, "train_img_s": train_ips["project fast"], "infer_img_s": infer_ips["project fast"],
              "train_speedup": _speedup(train_ips["project fast"], train_ips["official"]),
              "infer_speedup": _speedup(infer_ips["project fast"], infer_ips["official"]), "auroc_delta": float("nan"),
              "precision": effective_precision(setup.fast_precision, dev), "hw": hw}
    if args.fidelity:
        result["auroc_delta"] = _report_fidelity(setup, args, hw, say)
    say(f"\n--- targets ({hw['tag']}): " + "; ".join(_targets(result, dev, hw)))
    return result


def _targets(result: dict[str, Any], device: torch.device, hw: dict[str, str]) -> list[str]:
    """Speed targets met or not: CPU with native bf16 x4 training / x6 inference, CPU without
    x2 / x2.5 (fp32), CUDA x3 training / 3000 img/s inference."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    train, infer = float(result["train_speedup"]), float(result["infer_speedup"])
    if device.type == "cpu":
        t_train, t_infer = (4, 6) if hw["bf16"] == "native" else (2, 2.5)
        return [f"training x{result['train_speedup']} (target >= {t_train}): {verdict(train >= t_train)}",
                f"inference x{result['infer_speedup']} (target >= {t_infer}): {verdict(infer >= t_infer)}"]
    return [f"training x{result['train_speedup']} (target >= 3): {verdict(train >= 3)}",
            f"inference {result['infer_img_s']:.0f} img/s (target >= 3000): {verdict(result['infer_img_s'] >= 3000)}"]


def _report_scaling(setup: _Setup, res: _Results, counts: list[int], first: float, full_epochs: int,
                    hw: dict[str, str], say) -> None:
    say(f"\n--- scaling on {hw['tag']}: seconds per training epoch (best) vs number of images")
    say(f"  {'images':29s}" + "".join(f"{c:>9d}" for c in counts))
    fits = {}
    for name in setup.variants:
        ys = [res.best(f"train {name} n={c}") for c in counts]
        fits[name] = _fit_line(counts, ys)
        say(f"  {_label(setup, name, hw):29s}" + "".join(f"{y:9.2f}" for y in ys) +
            f"   fit {fits[name][0]:+.2f} s {fits[name][1] * 1e3:+.1f} ms/image")
    fill = max(first - res.best(f"train project fast n={counts[-1]}"), 0.0) / counts[-1]
    say(f"  full category x {full_epochs} epochs, from the fits (training passes; validation on the 20% held-out "
        f"images adds about n_val/inference img/s per epoch to all, less with the cache):")
    for m in MVTEC_TRAIN_IMAGES:
        parts = []
        for name in setup.variants:
            a, b = fits[name]
            total = full_epochs * max(a + b * m, 0.0) + (fill * m if name == "project fast" else 0.0)
            parts.append(f"{_label(setup, name, hw)} {total / 60:5.1f} min")
        say(f"    {m} train images: " + ", ".join(parts))


def _report_memory(setup: _Setup, res: _Results, n: int, per_image: int, hw: dict[str, str], say) -> None:
    from stfpm_lib.engine.feature_cache import MIB  # lazy: see the note above the imports

    say(f"\n--- memory for a full category (project fast path) on {hw['tag']}")
    m = max(MVTEC_TRAIN_IMAGES)
    uint8 = 4 * setup.size**2  # ImageDataset keeps image (3 bytes/pixel) and mask (1 byte/pixel)
    peak = res.peak(f"train project fast n={n}")
    if setup.device.type == "cuda":
        est = peak + per_image * (m - n)
        say(f"  GPU: measured peak {_mib(peak)} training on {n} images (models, activations, optimiser, cache); "
            f"+{per_image / MIB:.3f} MiB/image of cache -> {_mib(est)} for {m} images; host RAM: images "
            f"{_mib(uint8 * m)} plus the process")
        return
    est = peak + (per_image + uint8) * (m - n)
    say(f"  measured: peak RSS {_mib(peak)} training on {n} images (interpreter, torch, models, activations at "
        f"batch {setup.batch}, optimiser, data, cache of {n} images)")
    say(f"  per further image: teacher cache {per_image / MIB:.3f} MiB + decoded image and mask "
        f"{uint8 / MIB:.3f} MiB")
    say(f"  extrapolated (measured peak + per-image memory) to {m} images: {_mib(est)} = {est / 2**30:.2f} GiB: "
        f"{'within' if est < 8 * 2**30 else 'OVER'} the 8 GiB target")


def _report_fidelity(setup: _Setup, args, hw: dict[str, str], say) -> float:
    """Print the fidelity section; returns ``auroc_delta`` (the larger |delta|)."""
    say(f"\n--- fidelity on {hw['tag']}: synthetic category ({args.fid_train} train+val, {args.fid_test_good} good "
        f"+ 3x{args.fid_per_defect} defective test images, {setup.size}², random teacher, {args.fid_epochs} epochs "
        f"at batch {args.fid_batch}, same seed; fit/predict)")
    fid = _bench_fidelity(setup, args)
    say(f"  {'':31s} image AUROC  pixel AUROC")
    for name, row in fid["rows"].items():
        say(f"  {name:31s} {row['image']:11.4f}  {row['pixel']:11.4f}")
    say(f"  inference-only |delta| (same student, fp32 vs fast inference): {fid['infer_delta']:.4f}; "
        f"largest map difference {fid['map_rel_diff']:.1e} of the largest map value, largest score difference "
        f"{fid['score_rel_diff']:.1e} relative")
    say(f"  end-to-end |delta| (students trained in fp32 and fast): {fid['e2e_delta']:.4f}; control, fp32 with "
        f"channels_last only (a rounding change, same precision): {fid['control_delta']:.4f}")
    say("  (a few SGD steps at lr 0.4 amplify any rounding difference into another student, so the end-to-end "
        "figure measures that chaos as much as the precision; the control shows its size)")
    say("  last train loss: " + ", ".join(f"{k} {v:.4f}" for k, v in fid["loss"].items()) +
        "; fit seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in fid["seconds"].items()))
    worst = max(fid["infer_delta"], fid["e2e_delta"])
    say(f"  target |delta| <= 0.005: inference-only {'met' if fid['infer_delta'] <= 0.005 else 'NOT met'}, "
        f"end to end {'met' if fid['e2e_delta'] <= 0.005 else 'NOT met'}; auroc_delta in the last line = the "
        f"larger of the two ({worst:.4f})")
    return worst


def _last_line(r: dict[str, Any]) -> str:
    """Machine-readable summary; the model name (may hold spaces) comes last."""
    hw = r["hw"]
    return (f"train_speedup={r['train_speedup']} infer_speedup={r['infer_speedup']} "
            f"train_img_s={r['train_img_s']:.1f} infer_img_s={r['infer_img_s']:.1f} "
            f"auroc_delta={r['auroc_delta']:.4f} device={r['device']} precision={r['precision']} "
            f"capability={hw['capability']} bf16={hw['bf16']} model={hw['model']}")


# ============================================================================ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stfpm_lib.bench speed",
                                description="STFPM training/inference speed vs the official recipe (synthetic images).")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto: CPU, and CUDA too when present (default)")
    p.add_argument("--images", type=int, default=64, help="training images for the headline numbers (default 64)")
    p.add_argument("--scaling", default="16,32", help="other training image counts for the scaling table")
    p.add_argument("--infer-images", type=int, default=64, help="inference images (default 64)")
    p.add_argument("--gpu-factor", type=int, default=8,
                   help="on CUDA, image counts (training, scaling, inference) are multiplied by this (default 8)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (default 32, official)")
    p.add_argument("--eval-batch", type=int, default=None, help="project inference batch (default 32 CPU, 256 CUDA)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds, best taken (default 3)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="fast-path precision (default auto, as a user gets it: bf16 on CPUs with native bf16 and on "
                        "bf16-capable GPUs, fp16 on other GPUs, else fp32)")
    p.add_argument("--with-bf16", action="store_true",
                   help="also time the fast settings in bf16 (a 'project bf16' row, marked emulated on CPUs without "
                        "native bf16) when the fast path is not bf16 already")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--full-epochs", type=int, default=100, help="epochs for the full-category extrapolation")
    p.add_argument("--no-fidelity", dest="fidelity", action="store_false", help="skip the AUROC check")
    p.add_argument("--fid-epochs", type=int, default=6, help="fidelity: training epochs (default 6)")
    p.add_argument("--fid-batch", type=int, default=8, help="fidelity: training batch (default 8)")
    p.add_argument("--fid-train", type=int, default=20, help="fidelity: train/good images (80%% train, 20%% val)")
    p.add_argument("--fid-test-good", type=int, default=8, help="fidelity: normal test images")
    p.add_argument("--fid-per-defect", type=int, default=4, help="fidelity: test images per defect type (3 types)")
    p.add_argument("--in-process", action="store_true",
                   help="run all variants in this process (no per-variant processes; allocator untuned)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, one round, in-process (a few seconds; checks that it runs, numbers meaningless)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report and, last, the machine-readable line(s).

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0; 2 with a message on stderr for bad arguments.
    """
    args = _parser().parse_args(argv)
    if args.quick:
        args.images, args.scaling, args.infer_images, args.size, args.batch_size = 4, "", 2, 32, 2
        args.rounds, args.fid_epochs, args.fid_batch, args.fid_train = 1, 1, 2, 5
        args.fid_test_good, args.fid_per_defect, args.in_process = 2, 1, True
        args.with_bf16 = True  # every row's code runs
        args.eval_batch = args.eval_batch or 2
    try:
        args.scaling = [int(s) for s in str(args.scaling).split(",") if s.strip()]
    except ValueError:
        print(f"--scaling={args.scaling!r} must be comma-separated integers", file=sys.stderr)
        return 2
    for name in ("images", "infer_images", "size", "batch_size", "rounds", "fid_epochs", "fid_batch", "gpu_factor"):
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))

    def say(text: str) -> None:
        print(text, flush=True)

    import torchvision  # lazy: torchvision is heavy, see above

    from stfpm_lib.engine.device import effective_precision  # lazy: see the note above the imports

    say(f"STFPM speed benchmark: torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs: {_hardware(torch.device('cpu'))['tag']}")
    t_all = time.perf_counter()
    results = []
    for dev in devices:
        eval_batch = args.eval_batch or (256 if dev.type == "cuda" else 32)
        try:
            fast = effective_precision(args.precision, dev)
        except ConfigError as exc:
            print(f"--precision {args.precision}: {exc}", file=sys.stderr)
            return 2
        setup = _Setup(device=dev, size=args.size, batch=args.batch_size, eval_batch=eval_batch,
                       fast_precision=args.precision, with_bf16=args.with_bf16 and fast != "bf16")
        results.append(_report_device(setup, args, say))
    say(f"\ntotal benchmark time {time.perf_counter() - t_all:.0f} s")
    for r in results:
        say(_last_line(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
