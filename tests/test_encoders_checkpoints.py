"""Encoder shapes and official state-dict compatibility (key names and shapes as released)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18, resnet50

from hvc_runtime.encoder.backends.torchscript import quiet_jit
from hvc_runtime.encoder.checkpoints import (
    FORMAT_VERSION,
    HEADER_KEY,
    CheckpointHeader,
    load_encoder,
    save_encoder,
)
from hvc_runtime.encoder.network import StrideEightResNet, feature_size
from hvc_runtime.utils.errors import HvcError


def official_r18_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """A full torchvision ResNet-18 state dict (layer4 and fc included), as official .pth hold."""
    torch.manual_seed(seed)
    return resnet18(weights=None).state_dict()


@pytest.mark.parametrize(("height", "width"), [(480, 854), (64, 64), (61, 93), (17, 9)])
def test_feature_grid_is_ceil_of_stride_8(encoder, height, width):
    features = encoder(torch.rand(1, 3, height, width))
    assert features.shape == (1, 256, *feature_size(height, width))
    assert feature_size(height, width) == (-(-height // 8), -(-width // 8))
    torch.testing.assert_close(features.norm(dim=1), torch.ones(features.shape[-2:])[None])


def test_parameter_counts_match_the_method_description():
    assert sum(p.numel() for p in StrideEightResNet("resnet18", "layer3").parameters()) == 2_782_784
    assert (
        sum(p.numel() for p in StrideEightResNet("resnet18", "layer4").parameters()) == 11_176_512
    )
    assert sum(p.numel() for p in StrideEightResNet("resnet50", "layer3").parameters()) == 8_543_296


def test_official_init_zeroes_last_bn_of_each_block(encoder):
    trunk = StrideEightResNet("resnet18", "layer3")
    assert all(int(torch.count_nonzero(block.bn2.weight)) == 0 for block in trunk.layer1)
    assert bool((trunk.bn1.weight == 1).all())
    # the runtime's random default keeps residual branches alive (BatchNorm weight 1)
    assert all(bool((block.bn2.weight == 1).all()) for block in encoder.backbone.layer1)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {f"module.{k}": v for k, v in s.items()},
        lambda s: {
            "model": {f"online_encoder.{k}": v for k, v in s.items()}
            | {"projector.w": torch.ones(1)}
        },
        lambda s: {"state_dict": s, "epoch": 20},
    ],
    ids=["plain", "module", "online_encoder", "state_dict"],
)
def test_official_layouts_load_unchanged(tmp_path, wrap):
    state = official_r18_state()
    path = tmp_path / "hvc_ytb.pth"
    torch.save(wrap(state), path)
    loaded = load_encoder(path)
    own = loaded.encoder.backbone.state_dict()
    for key, value in own.items():
        torch.testing.assert_close(value, state[key])
    assert loaded.trained


def test_moco_fusion_gives_1280_d_weighted_features(tmp_path):
    torch.manual_seed(2)
    moco = {f"module.encoder_q.{k}": v for k, v in resnet50(weights=None).state_dict().items()}
    moco["module.encoder_q.fc.weight"] = torch.zeros(128, 2048)  # MoCo-v1 head shape
    moco["module.encoder_q.fc.bias"] = torch.zeros(128)
    torch.save({"state_dict": moco, "epoch": 200, "arch": "resnet50"}, tmp_path / "moco.pth.tar")
    torch.save(official_r18_state(), tmp_path / "hvc.pth")
    fused = load_encoder(tmp_path / "hvc.pth", moco=tmp_path / "moco.pth.tar").encoder
    x = torch.rand(1, 3, 40, 48)
    out = fused(x)
    assert out.shape == (1, 1280, 5, 6)
    plain = load_encoder(tmp_path / "hvc.pth").encoder(x)
    expected_hvc = 1.05 * plain / torch.sqrt(torch.tensor(1.05**2 + 1.0))
    torch.testing.assert_close(out[:, :256], expected_hvc, atol=1e-5, rtol=1e-4)


def test_official_bn_drift_replays_the_official_dims_probe(tmp_path):
    """The official loader runs a 256×256 zero image through the trunk in training mode; the
    option reproduces the BatchNorm statistics that leaves, and only when asked."""
    state = official_r18_state()
    for key, value in state.items():  # trained-looking statistics, so the step is visible
        if key.endswith(("running_mean", "running_var")):
            value.copy_(torch.rand_like(value) + 0.5)
    torch.save(state, tmp_path / "hvc.pth")
    official = resnet18(weights=None)
    official.load_state_dict(state)
    for module in official.layer3.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.stride = (1, 1)
    trunk = torch.nn.Sequential(*list(official.children())[:7]).train()  # conv1 … layer3
    with torch.no_grad():
        trunk(torch.zeros(1, 3, 256, 256))
    expected = {
        k: v
        for k, v in official.state_dict().items()
        if k.startswith(("bn1", "layer1", "layer2", "layer3"))
    }
    drifted = load_encoder(tmp_path / "hvc.pth", official_bn_drift=True).encoder.backbone
    for key in ("bn1.running_var", "layer1.0.bn2.running_mean", "layer3.1.bn2.running_var"):
        torch.testing.assert_close(drifted.state_dict()[key], expected[key])
        assert not torch.allclose(expected[key], state[key])
    plain = load_encoder(tmp_path / "hvc.pth").encoder.backbone
    torch.testing.assert_close(plain.state_dict()["bn1.running_var"], state["bn1.running_var"])
    assert not drifted.training


def test_wrong_architecture_names_the_keys(tmp_path):
    torch.save(resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(
        HvcError, match=r"r50\.pth: not a resnet18 layer3 .*unexpected keys \[.*conv3"
    ):
        load_encoder(tmp_path / "r50.pth")


def test_missing_keys_and_wrong_shapes_are_named(tmp_path):
    state = official_r18_state()
    del state["layer2.0.conv1.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(HvcError, match=r"missing keys \[layer2\.0\.conv1\.weight\]"):
        load_encoder(tmp_path / "missing.pth")
    state = official_r18_state()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(HvcError, match=r"wrong shape for conv1\.weight"):
        load_encoder(tmp_path / "shape.pth")


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "trainer.pth"
    torch.save({"model": official_r18_state(), "args": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(HvcError, match=r"pickled Python objects \(argparse\.Namespace\)") as error:
        load_encoder(path)
    assert "weights_only" not in str(error.value)  # never advise unpickling


def test_full_model_torchscript_and_artifacts_without_manifest(tmp_path):
    """A pickled nn.Module, a TorchScript file and an ONNX file given as checkpoints: each is
    named for what it is, and nothing suggests loading it unsafely."""
    torch.save(resnet50(weights=None), tmp_path / "full.pth")
    with torch.no_grad(), quiet_jit():
        traced = torch.jit.trace(torch.nn.Conv2d(3, 3, 1), torch.rand(1, 3, 8, 8))
    traced.save(str(tmp_path / "enc.pt"))
    (tmp_path / "enc.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    expected = {
        "full.pth": r"pickled Python objects \(torchvision\.models\.resnet\.ResNet\)",
        "enc.pt": "a TorchScript file without its manifest",
        "enc.onnx": r"no manifest enc\.onnx\.json",
    }
    for name, message in expected.items():
        with pytest.raises(HvcError, match=message) as error:
            load_encoder(tmp_path / name)
        assert "weights_only" not in str(error.value) and "\n" not in str(error.value)


def test_non_finite_or_corrupt_weights_are_refused(tmp_path):
    state = official_r18_state()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(HvcError, match=r"layer2\.0\.conv1\.weight holds 1 non-finite"):
        load_encoder(tmp_path / "nan.pth")
    state = official_r18_state()
    state["bn1.running_var"][3] = -1.0
    torch.save(state, tmp_path / "var.pth")
    with pytest.raises(HvcError, match=r"bn1\.running_var holds negative variances"):
        load_encoder(tmp_path / "var.pth")


def test_safetensors_round_trip_with_header(tmp_path, encoder):
    header = CheckpointHeader(training={"data": "davis2016-train", "steps": 10}, git_revision="abc")
    path = tmp_path / "enc.safetensors"
    save_encoder(encoder.backbone, path, header, dtype=torch.float16)
    loaded = load_encoder(path)
    assert loaded.trained and "project checkpoint" in loaded.description
    x = torch.rand(1, 3, 32, 40)
    torch.testing.assert_close(loaded.encoder(x), encoder(x), atol=5e-3, rtol=0)
    assert not list(tmp_path.glob(".enc.safetensors.*")), "temp file left behind"


def test_safetensors_without_header_or_from_the_future(tmp_path, encoder):
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.backbone.state_dict().items()}, plain)
    with pytest.raises(HvcError, match="without the hvc header"):
        load_encoder(plain)
    future = tmp_path / "future.safetensors"
    header = {"format_version": FORMAT_VERSION + 1}
    save_file(
        {k: v.contiguous() for k, v in encoder.backbone.state_dict().items()},
        future,
        metadata={HEADER_KEY: json.dumps(header)},
    )
    with pytest.raises(HvcError, match="newer than this hvc"):
        load_encoder(future)


def test_default_is_the_packaged_trained_encoder_every_time():
    first, second = load_encoder(), load_encoder()
    assert first.trained and first.description.startswith("default encoder")
    for a, b in zip(
        first.encoder.state_dict().values(), second.encoder.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(HvcError, match=r"junk\.pth: not a loadable"):
        load_encoder(path)
    with pytest.raises(HvcError, match="checkpoint not found"):
        load_encoder(tmp_path / "absent.pth")


def test_half_precision_backend_casts_weights_once_with_autocast_results():
    """Convolution weights are cast once, on a copy (autocast would cast them at every call,
    every CUDA-graph replay): the features are bit for bit autocast's, the caller's module
    keeps its fp32 weights."""
    from hvc_runtime.encoder.backends.torch_module import TorchBackend
    from hvc_runtime.encoder.checkpoints import random_encoder

    encoder = random_encoder().eval()
    frames = torch.rand(1, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = encoder.to(memory_format=torch.channels_last)(frames)
    backend = TorchBackend(encoder, torch.device("cpu"), "bf16")
    assert torch.equal(backend(frames), expected)
    assert all(p.dtype == torch.float32 for p in encoder.parameters())
    casts = {p.dtype for p in backend._run.parameters()}
    assert casts == {torch.bfloat16, torch.float32}  # convolutions bf16, normalisation fp32
