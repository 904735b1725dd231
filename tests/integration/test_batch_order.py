"""fit's training batches are the official code's, batch for batch (same seed, same RNG stream).

The official order is re-derived here from its definition (gdwang08/STFPM main.py):
``np.random.seed(seed)``, ``torch.manual_seed(seed)``, teacher ``resnet18(pretrained=True)``
(a full default-initialised model, then loaded weights), student ``resnet18(pretrained=False)``,
then per epoch one pass of ``DataLoader(train, batch_size, shuffle=True, drop_last=False)``
followed by one pass of the validation ``DataLoader(val, batch_size=32, shuffle=False)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import stfpm_lib.engine.training as train_mod
from stfpm_lib.config import STFPMConfig
from stfpm_lib.engine.training import fit

# 9 training images (12 × 0.8), batch 4 does not divide it: batches of 4, 4, 1.
CFG = STFPMConfig.from_preset("official", teacher_weights="random", image_size=64, batch_size=4,
                              eval_batch_size=8, epochs=3)

pytestmark = pytest.mark.usefixtures("one_thread")


def official_batches(seed: int, n_train: int, n_val: int, batch_size: int, epochs: int) -> list[list[list[int]]]:
    """Training batches (indices into the training list) per epoch, as the official script draws them."""
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        torch.manual_seed(seed)
        torchvision.models.resnet18()  # teacher: default init draws, then the pretrained weights are loaded
        torchvision.models.resnet18()  # student
        epochs_out = []
        for _ in range(epochs):
            train_loader = torch.utils.data.DataLoader(range(n_train), batch_size=batch_size, shuffle=True,
                                                       drop_last=False)
            epochs_out.append([batch.tolist() for batch in train_loader])
            for _batch in torch.utils.data.DataLoader(range(n_val), batch_size=32, shuffle=False, drop_last=False):
                pass
    return epochs_out


@pytest.fixture
def recorded(monkeypatch):
    """The dataset indices of every batch fit feeds to the student, in order."""
    batches: list[list[int]] = []
    original = train_mod.train_step

    def spy(model, optimizer, scaler, x, cfg, device, *, indices=None, cache=None):
        batches.append(torch.as_tensor(indices).tolist())
        return original(model, optimizer, scaler, x, cfg, device, indices=indices, cache=cache)

    monkeypatch.setattr(train_mod, "train_step", spy)
    return batches


def _expected(result, cfg: STFPMConfig) -> list[list[int]]:
    ds = torch.load(result.checkpoint_path, weights_only=True)["dataset"]
    n_train, n_val = len(ds["train_images"]), len(ds["val_images"])
    assert n_train % cfg.batch_size != 0
    per_epoch = official_batches(cfg.seed, n_train, n_val, cfg.batch_size, cfg.epochs)
    assert len({str(e) for e in per_epoch}) == cfg.epochs  # each epoch has its own permutation
    return [batch for epoch in per_epoch for batch in epoch]


@pytest.mark.parametrize("seed", [0, 7])
def test_training_batches_are_the_official_ones(tiny_mvtec, tmp_path, recorded, seed):
    cfg = CFG.replace(seed=seed)
    result = fit(cfg, tiny_mvtec, "brick", tmp_path / "run", progress=False)
    assert recorded == _expected(result, cfg)


def test_resumed_run_keeps_the_official_batches(tiny_mvtec, tmp_path, recorded, fit_interrupted):
    out = tmp_path / "run"
    fit_interrupted(2, CFG, tiny_mvtec, "brick", out)
    torch.rand(5)  # whatever the caller does in between must not matter: last.pt holds the RNG state

    # A last.pt of the older version (format version 1: own shuffling generator, no "shuffle"
    # marker, no hashes) is refused.
    old = tmp_path / "old"
    old.mkdir()
    state = torch.load(out / "last.pt", weights_only=True)
    for key in ("shuffle", "student_sha256", "content_sha256"):
        del state[key]
    state["version"] = 1
    torch.save(state, old / "last.pt")
    with pytest.raises(train_mod.TrainError, match="older version that shuffled"):
        fit(CFG, tiny_mvtec, "brick", old, progress=False)
    result = fit(CFG, tiny_mvtec, "brick", out, progress=False)
    assert result.resumed_from_epoch == 2
    assert recorded == _expected(result, CFG)


def test_worker_processes_do_not_change_the_batches(tiny_mvtec, tmp_path, recorded):
    cfg = CFG.replace(num_workers=2, epochs=2)
    result = fit(cfg, tiny_mvtec, "brick", tmp_path / "run", progress=False)
    assert recorded == _expected(result, cfg)
