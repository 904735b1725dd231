"""Feature pyramids: shapes for every backbone x layer subset, truncation, frozen teacher."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from stfpm_lib.config import LAYERS, STFPMConfig
from stfpm_lib.method.model import STFPM, FeaturePyramid, build_stfpm, feature_shapes
from stfpm_lib.method.weights import TeacherWeights

SUBSETS = [c for r in range(1, 5) for c in itertools.combinations(LAYERS, r)]  # 15
X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3), "wide_resnet50_2": (3, 4, 6, 3)}
# (C, side) of layer1..4 for a 64x64 input: sides 16, 8, 4, 2.
EXPECTED = {
    "resnet18": [(64, 16), (128, 8), (256, 4), (512, 2)],
    "resnet34": [(64, 16), (128, 8), (256, 4), (512, 2)],
    "resnet50": [(256, 16), (512, 8), (1024, 4), (2048, 2)],
    "wide_resnet50_2": [(256, 16), (512, 8), (1024, 4), (2048, 2)],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def count_block_calls(module: nn.Module, x: torch.Tensor) -> int:
    """Run ``module(x)`` and count residual-block forward calls (a global forward hook)."""
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda mod, inp, out: calls.append(1) if isinstance(mod, (BasicBlock, Bottleneck)) else None)
    try:
        with torch.no_grad():
            module(x)
    finally:
        handle.remove()
    return len(calls)


def check_pyramid(backbone: str, subset: tuple[str, ...]) -> None:
    net = FeaturePyramid(backbone, subset).eval()
    with torch.no_grad():
        feats = net(X64)
    want = [EXPECTED[backbone][LAYERS.index(name)] for name in subset]
    assert [(f.shape[1], f.shape[2], f.shape[3]) for f in feats] == [(c, s, s) for c, s in want]
    assert [tuple(f.shape[1:]) for f in feats] == feature_shapes(backbone, subset, 64)
    deepest = max(LAYERS.index(n) for n in subset)
    for i, name in enumerate(LAYERS):  # later stages are not built
        assert hasattr(net, name) == (i <= deepest), (backbone, subset, name)
    assert not hasattr(net, "fc") and not hasattr(net, "avgpool")
    # ...and not run: exactly the blocks of layer1..deepest are called.
    assert count_block_calls(net, X64) == sum(BLOCKS[backbone][: deepest + 1])


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(n[-1] for n in s))
def test_resnet18_every_subset(subset):
    check_pyramid("resnet18", subset)


@pytest.mark.parametrize("backbone", ["resnet34", "resnet50"])
def test_deeper_backbones_subsets(backbone):
    for subset in [("layer1",), ("layer2", "layer4"), ("layer1", "layer2", "layer3")]:
        check_pyramid(backbone, subset)


@pytest.fixture(scope="module")
def wide_full():
    return FeaturePyramid("wide_resnet50_2", LAYERS).eval()


def test_wide_resnet_layers(wide_full):
    with torch.no_grad():
        feats = wide_full(X64)
    assert [tuple(f.shape[1:]) for f in feats] == [(c, s, s) for c, s in EXPECTED["wide_resnet50_2"]]
    check_pyramid("wide_resnet50_2", ("layer1", "layer2", "layer3"))
    # the "wide" bottleneck: conv2 of layer1 has 128 channels (64 in resnet50)
    assert wide_full.layer1[0].conv2.out_channels == 128


def test_output_order_is_network_order():
    net = FeaturePyramid("resnet18", ("layer3", "layer1"))
    assert net.layers == ("layer1", "layer3")
    with torch.no_grad():
        feats = net.eval()(X64)
    assert [f.shape[1] for f in feats] == [64, 256]


def test_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        FeaturePyramid("vgg16", ("layer1",))
    for bad in [(), ("layer5",), ("layer1", "layer1")]:
        with pytest.raises(ValueError, match="layers"):
            FeaturePyramid("resnet18", bad)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        FeaturePyramid("resnet18", ("layer1",))(torch.zeros(3, 64, 64))


def test_teacher_frozen_and_eval_student_trains():
    model = build_stfpm(STFPMConfig(teacher_weights="random", layers=("layer1", "layer2")))
    assert isinstance(model, STFPM)
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert all(p.requires_grad for p in model.student.parameters())
    model.train()
    assert not model.teacher.training and model.student.training
    assert all(not m.training for m in model.teacher.modules())
    model.teacher.train()  # even asked directly
    assert not model.teacher.training
    t, s = model(torch.randn(2, 3, 64, 64))
    assert all(not f.requires_grad for f in t) and all(f.requires_grad for f in s)
    sum(f.mean() for f in s).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.student.parameters())
    # BN running stats of the teacher do not move in a forward pass in "train" mode
    before = model.teacher.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5 + 3)
    torch.testing.assert_close(model.teacher.bn1.running_mean, before)


def test_build_is_deterministic_and_teacher_differs_from_student():
    cfg = STFPMConfig(teacher_weights="random", layers=("layer1",))
    state_before = torch.get_rng_state()
    a, b = build_stfpm(cfg), build_stfpm(cfg)
    assert torch.equal(torch.get_rng_state(), state_before)  # global RNG untouched
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.teacher.conv1.weight, a.student.conv1.weight)
    c = build_stfpm(cfg.replace(seed=1))
    assert not torch.equal(a.student.conv1.weight, c.student.conv1.weight)
    assert a.teacher_weights.describe()["seed"] == 0 and a.teacher_weights.source == "random"


def test_student_init_follows_official_rng_order():
    """Student = second full resnet18 drawn after torch.manual_seed(seed) (the teacher is first)."""
    import torchvision

    cfg = STFPMConfig(teacher_weights="random", layers=("layer1", "layer2", "layer3"))
    model = build_stfpm(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torchvision.models.resnet18()
        ref = torchvision.models.resnet18()
    for name, value in model.student.state_dict().items():
        assert torch.equal(value, ref.state_dict()[name]), name
    # default torchvision init: BN gamma 1, beta 0 (no zero-init residual)
    assert torch.equal(model.student.layer1[0].bn2.weight, torch.ones(64))


def test_teacher_loads_given_weights():
    import torchvision

    src = torchvision.models.resnet18().state_dict()
    weights = TeacherWeights(source="file", name="x.pth", backbone="resnet18", state_dict=src)
    model = build_stfpm(STFPMConfig(layers=("layer2",)), weights=weights)
    for name, value in model.teacher.state_dict().items():
        assert torch.equal(value, src[name]), name
    with pytest.raises(ValueError, match="resnet34"):
        build_stfpm(STFPMConfig(backbone="resnet34"), weights=weights)
    partial = TeacherWeights(source="file", name="partial.pth", backbone="resnet18",
                             state_dict={k: v for k, v in src.items() if not k.startswith("layer3.")})
    with pytest.raises(ValueError, match=r"partial.pth.*missing \['layer3"):
        build_stfpm(STFPMConfig(), weights=partial)


@pytest.mark.parametrize("backbone, last_bn", [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_last_bn_init_zeroes_each_blocks_last_batchnorm_and_nothing_else(backbone, last_bn):
    """``random_init="zero_last_bn"``: the same RNG draws as torchvision's init, then γ=0 in the last
    BatchNorm of every residual block, in the student and in a random teacher (written out here
    from the block structure, not from torchvision's flag)."""
    base = STFPMConfig(teacher_weights="random", backbone=backbone, layers=("layer1", "layer2"))
    plain, zero = build_stfpm(base), build_stfpm(base.replace(random_init="zero_last_bn"))
    for net_plain, net_zero in ((plain.student, zero.student), (plain.teacher, zero.teacher)):
        zeroed = set()
        for layer in ("layer1", "layer2"):
            for i, block in enumerate(getattr(net_zero, layer)):
                assert torch.equal(getattr(block, last_bn).weight, torch.zeros_like(getattr(block, last_bn).weight))
                zeroed.add(f"{layer}.{i}.{last_bn}.weight")
        state_plain = net_plain.state_dict()
        for name, value in net_zero.state_dict().items():
            if name in zeroed:
                assert torch.equal(state_plain[name], torch.ones_like(value)), name
            else:  # every other tensor (convs, other BNs, downsample) is the torchvision draw
                assert torch.equal(value, state_plain[name]), name
        assert len(zeroed) == BLOCKS[backbone][0] + BLOCKS[backbone][1]
    # with γ=0 the residual branch adds β=0 in eval mode: each block of a random teacher is relu(x + shortcut)
    block = zero.teacher.layer1[0]
    x = torch.rand(1, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        shortcut = x if block.downsample is None else block.downsample(x)
        torch.testing.assert_close(block(x), torch.relu(shortcut))


def test_zero_last_bn_does_not_touch_loaded_teacher_weights():
    import torchvision

    src = torchvision.models.resnet18().state_dict()
    weights = TeacherWeights(source="file", name="x.pth", backbone="resnet18", state_dict=src)
    model = build_stfpm(STFPMConfig(layers=("layer1",), random_init="zero_last_bn"), weights=weights)
    assert torch.equal(model.teacher.layer1[0].bn2.weight, src["layer1.0.bn2.weight"])
    assert torch.equal(model.student.layer1[0].bn2.weight, torch.zeros(64))


def test_random_init_is_validated():
    with pytest.raises(ValueError, match="random_init='zero' is not one of"):
        FeaturePyramid("resnet18", ("layer1",), random_init="zero")
