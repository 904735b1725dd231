"""Teacher weights: random, files (hash, keys, shapes), ImageNet cache and the offline error."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import stfpm_lib.method.weights as W
from stfpm_lib.config import STFPMConfig
from stfpm_lib.io import sha256_file
from stfpm_lib.method.model import build_stfpm
from stfpm_lib.method.weights import (
    WeightsFileError,
    WeightsUnavailableError,
    resolve_teacher_weights,
    state_dict_sha256,
)


@pytest.fixture(scope="module")
def r18_state():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        return torchvision.models.resnet18().state_dict()


@pytest.fixture()
def r18_file(tmp_path, r18_state) -> Path:
    path = tmp_path / "teacher.pth"
    torch.save(r18_state, path)
    return path


@pytest.fixture()
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_random():
    w = resolve_teacher_weights("random", "resnet50")
    assert (w.source, w.name, w.path, w.sha256, w.state_dict) == ("random", "random", None, None, None)
    assert w.describe()["backbone"] == "resnet50"


def test_file_loads_and_records_sha256(r18_file, r18_state):
    w = resolve_teacher_weights(str(r18_file), "resnet18")
    assert w.source == "file" and w.name == "teacher.pth"
    assert w.sha256 == sha256_file(r18_file) and len(w.sha256) == 64
    assert Path(w.path) == r18_file.resolve()
    model = build_stfpm(STFPMConfig(teacher_weights=str(r18_file), layers=("layer1", "layer4")))
    for name, value in model.teacher.state_dict().items():
        assert torch.equal(value, r18_state[name]), name
    assert model.teacher_weights.describe()["sha256"] == w.sha256


def test_file_nested_state_dict_and_module_prefix(tmp_path, r18_state):
    path = tmp_path / "nested.pth"
    torch.save({"category": "x", "state_dict": {"module." + k: v for k, v in r18_state.items()}}, path)
    w = resolve_teacher_weights(str(path), "resnet18")
    assert set(w.state_dict) == set(r18_state)


def test_file_without_fc_is_accepted(tmp_path, r18_state):
    path = tmp_path / "nofc.pth"
    torch.save({k: v for k, v in r18_state.items() if not k.startswith("fc.")}, path)
    assert resolve_teacher_weights(str(path), "resnet18").source == "file"


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsFileError, match="nope.pth"):
        resolve_teacher_weights(str(missing), "resnet18")


def test_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsFileError, match="garbage.pth"):
        resolve_teacher_weights(str(bad), "resnet18")


def test_wrong_backbone_names_file_and_backbone(r18_file):
    with pytest.raises(WeightsFileError, match=r"teacher\.pth is not a resnet34 state dict.*missing"):
        resolve_teacher_weights(str(r18_file), "resnet34")
    with pytest.raises(WeightsFileError, match=r"teacher\.pth is not a resnet50 state dict.*shape"):
        resolve_teacher_weights(str(r18_file), "resnet50")


def test_hub_named_file_hash_is_checked(tmp_path, r18_file):
    sha = sha256_file(r18_file)
    good = tmp_path / f"resnet18-{sha[:8]}.pth"
    shutil.copy(r18_file, good)
    assert resolve_teacher_weights(str(good), "resnet18").sha256 == sha
    # The torchvision file name with other content: rejected, names the hash.
    fake = tmp_path / "resnet18-f37072fd.pth"
    shutil.copy(r18_file, fake)
    with pytest.raises(WeightsFileError, match=r"resnet18-f37072fd\.pth.*does not start with 'f37072fd'"):
        resolve_teacher_weights(str(fake), "resnet18")


def test_offline_imagenet_error_names_file_and_directory(empty_torch_home, monkeypatch):
    calls = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_teacher_weights("imagenet", "resnet18")
    msg = str(info.value)
    directory = empty_torch_home / "hub" / "checkpoints"
    assert "resnet18-f37072fd.pth" in msg and str(directory) in msg and "teacher_weights=" in msg
    assert "To check the pipeline without them: teacher_weights=random (-p teacher_weights random" in msg
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert not (directory / "resnet18-f37072fd.pth").exists()
    # build_stfpm does not fall back to anything either
    with pytest.raises(WeightsUnavailableError):
        build_stfpm(STFPMConfig())


def test_imagenet_member_choice_and_unknown_member(empty_torch_home, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(WeightsUnavailableError, match="resnet50-11ad3fa6.pth"):
        resolve_teacher_weights("imagenet:IMAGENET1K_V2", "resnet50")
    with pytest.raises(WeightsFileError, match="IMAGENET1K_V9"):
        resolve_teacher_weights("imagenet:IMAGENET1K_V9", "resnet18")


class FakeWeights:
    """Stands in for a torchvision weights enum member whose URL names our test file."""

    def __init__(self, url: str) -> None:
        self.url, self.name = url, "IMAGENET1K_V1"

    def get_state_dict(self, progress=True, check_hash=False):
        return torch.hub.load_state_dict_from_url(self.url, progress=progress, check_hash=check_hash)


def test_imagenet_cached_and_downloaded(empty_torch_home, monkeypatch, r18_file, r18_state):
    sha = sha256_file(r18_file)
    file_name = f"resnet18-{sha[:8]}.pth"
    monkeypatch.setattr(W, "imagenet_weights_enum", lambda b, m="IMAGENET1K_V1": FakeWeights(
        f"https://example.invalid/models/{file_name}"))
    downloads = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        downloads.append((url, hash_prefix))
        shutil.copy(r18_file, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    w = resolve_teacher_weights("imagenet", "resnet18")  # not cached: "downloads" through the hub API
    cached = empty_torch_home / "hub" / "checkpoints" / file_name
    assert downloads == [(f"https://example.invalid/models/{file_name}", sha[:8])]  # hash checked on download
    assert (w.source, w.path, w.sha256, w.name) == ("imagenet", str(cached), sha, "FakeWeights.IMAGENET1K_V1")
    assert state_dict_sha256(w.state_dict) == state_dict_sha256(r18_state)
    w2 = resolve_teacher_weights("imagenet", "resnet18")  # cached now: no second download
    assert len(downloads) == 1 and w2.sha256 == sha
    # A corrupted cache file is caught by its name's hash, with the fix in the message.
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsFileError, match="delete it and fetch it again"):
        resolve_teacher_weights("imagenet", "resnet18")


def test_state_dict_sha256_is_a_content_fingerprint(r18_state):
    a = state_dict_sha256(r18_state)
    assert a == state_dict_sha256(dict(reversed(list(r18_state.items()))))  # order-independent
    changed = dict(r18_state)
    changed["conv1.weight"] = changed["conv1.weight"].clone()
    changed["conv1.weight"][0, 0, 0, 0] += 1e-3
    assert state_dict_sha256(changed) != a
