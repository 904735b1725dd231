"""The runner's teacher policy: the demo falls back loudly to a labelled random teacher; other runs never do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stfpm_lib.config import STFPMConfig
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.runner import teacher
from stfpm_lib.runner.errors import BatchError
from stfpm_lib.runner.teacher import banner, check_teacher, demo_teacher_weights, teacher_note


@pytest.fixture()
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("STFPM_OFFLINE", raising=False)
    return tmp_path / "hub" / "checkpoints"


def test_random_teacher_label() -> None:
    assert RANDOM_TEACHER_LABEL == "random teacher (not comparable with the paper)"


def test_falls_back_loudly_when_not_downloadable(empty_hub: Path) -> None:
    calls = []

    def unreachable(url: str, timeout: float) -> str:
        calls.append((url, timeout))
        return "offline in this test"

    source, warning = demo_teacher_weights("resnet18", probe_timeout_s=0.5, probe=unreachable)
    assert source == "random"
    assert calls == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", 0.5)]
    lines = warning.splitlines()
    assert len(lines) >= 8 and lines[0] == lines[-1] == "!" * 78
    for phrase in ("NOT available", "resnet18-f37072fd.pth", str(empty_hub), "offline in this test",
                   "RANDOMLY INITIALISED", "NOT comparable", RANDOM_TEACHER_LABEL, "never fall back"):
        assert phrase in warning


def test_imagenet_when_downloadable(empty_hub: Path) -> None:
    assert demo_teacher_weights("wide_resnet50_2", probe=lambda url, t: None) == ("imagenet", None)


def test_offline_env_skips_the_probe(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STFPM_OFFLINE", "1")

    def must_not_run(url: str, timeout: float) -> str:
        raise AssertionError("probe called although STFPM_OFFLINE is set")

    source, warning = demo_teacher_weights(probe=must_not_run)
    assert source == "random" and "STFPM_OFFLINE" in warning


def test_cached_file_is_verified(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_hub.mkdir(parents=True)
    (empty_hub / "resnet18-f37072fd.pth").write_bytes(b"not a state dict")
    source, warning = demo_teacher_weights(probe=lambda url, t: None)
    assert source == "random" and "is unusable" in warning and "resnet18-f37072fd.pth" in warning
    seen = []
    monkeypatch.setattr(teacher, "resolve_teacher_weights", lambda spec, backbone: seen.append((spec, backbone)))
    assert demo_teacher_weights(probe=lambda url, t: "unreachable") == ("imagenet", None)
    assert seen == [("imagenet", "resnet18")]


def test_banner_frames_a_warning_once() -> None:
    framed = banner("no weights")
    assert framed.splitlines() == ["!" * 78, "!! WARNING: no weights", "!" * 78]
    assert banner(framed) == framed


def test_check_teacher_never_falls_back(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STFPM_OFFLINE", "1")
    assert check_teacher(None) is None
    assert check_teacher(STFPMConfig.from_preset("official", teacher_weights="random")) is None
    missing = empty_hub.parent / "missing.pth"
    with pytest.raises(BatchError, match="teacher weights .*missing.pth.* unavailable"):
        check_teacher(STFPMConfig.from_preset("official", teacher_weights=str(missing)))


def test_teacher_note_names_what_the_run_uses() -> None:
    assert teacher_note(STFPMConfig.from_preset("official", teacher_weights="random"), None) is None
    cfg = STFPMConfig.from_preset("official")
    assert teacher_note(cfg, None) == "teacher weights: imagenet (resnet18; resolved by the notebooks)"
