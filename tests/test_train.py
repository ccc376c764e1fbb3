"""hvc-train on CPU: crops and boxes, the loss, exact resume, torchrun with gloo, export, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hvc_runtime.cli import run_app
from hvc_runtime.encoder.checkpoints import load_encoder, read_header
from hvc_runtime.io.masks import write_palette_png
from hvc_runtime.utils.devices import cpu_has_native_bf16
from hvc_runtime.utils.errors import HvcError, HvcWarning
from hvc_train.checkpointing import load_checkpoint, save_checkpoint
from hvc_train.config import TrainConfig, load_config
from hvc_train.crops import cell_centres, crop_pair
from hvc_train.loop import train
from hvc_train.loss import positive_pairs
from hvc_train.model import HVCNetwork, momentum_at
from hvc_train.trainer import amp_dtype
from tests.conftest import DAVIS2016, smooth_texture


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for k in range(16):
        folder = root / f"set{k % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(smooth_texture(72, 96, seed=k, cells=5)).save(folder / f"{k:03d}.jpg")
    return root


def tiny(image_tree, **changes) -> TrainConfig:
    values = dict(
        images=[str(image_tree)], image_size=64, batch_size=4, epochs=4, workers=0, log_every=1
    )
    values.update(changes)
    return TrainConfig(**values)


def test_crop_boxes_map_a_known_pixel_to_its_cell():
    """A marker pixel lands, in each resized view, in the cell whose box-derived centre is
    nearest to the marker's normalised image position; the two cells form a positive pair."""
    height, width, size, grid = 120, 160, 64, 8
    marker = (37, 101)  # (row, column)
    image = np.zeros((height, width, 3), np.uint8)
    image[marker] = 255
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 10:
        view1, view2, box1, box2 = crop_pair(image, rng, size, min_scale=0.3)
        cells = []
        for view, box in ((view1, box1), (view2, box2)):
            brightness = view.float().sum(0)
            if brightness.max() < 30:
                break  # the marker is outside this crop
            row, col = np.unravel_index(int(brightness.argmax()), brightness.shape)
            cell = (row * grid // size) * grid + col * grid // size
            centres, _ = cell_centres(box[None], grid)
            point = torch.tensor([marker[1] / (width - 1), marker[0] / (height - 1)])
            nearest = int((centres[0] - point).norm(dim=1).argmin())
            assert nearest == cell
            cells.append(cell)
        else:
            positives = positive_pairs(box1[None], box2[None], grid, pos_radius=1.0)
            assert positives[0, cells[0], cells[1]] == 1
            checked += 1


def test_network_matches_the_method_description():
    network = HVCNetwork()
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(network) == 23_211_654
    assert sum(p.numel() for p in network.parameters() if p.requires_grad) == 11_771_206
    assert momentum_at(0, 100) == pytest.approx(0.99) and momentum_at(100, 100) == pytest.approx(
        1.0
    )


def test_loss_is_finite_and_decreases(image_tree, tmp_path):
    result = train(
        tiny(image_tree, max_steps=50, batch_size=8, epochs=50),
        tmp_path / "run",
        show_progress=False,
    )
    losses = np.array(result.losses)
    assert len(losses) == 50 and np.isfinite(losses).all()
    assert losses[-10:].mean() < losses[:10].mean() - 0.1


def test_resume_reproduces_the_uninterrupted_run(image_tree, tmp_path):
    config = tiny(image_tree, max_steps=7, workers=2)
    whole = train(config, tmp_path / "whole", show_progress=False)
    first = train(tiny(image_tree, max_steps=3, workers=2), tmp_path / "parts", show_progress=False)
    rest = train(config, tmp_path / "parts", resume=True, show_progress=False)
    assert first.losses + rest.losses == whole.losses
    state_a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    state_b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_exported_encoder_loads_in_hvc_run(image_tree, tmp_path):
    result = train(tiny(image_tree, max_steps=2), tmp_path / "run", show_progress=False)
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        Image.fromarray(smooth_texture(48, 64, seed=k)).save(frames / f"{k:05d}.jpg")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 10:40] = 1
    write_palette_png(tmp_path / "mask.png", mask)
    outcome = CliRunner().invoke(
        run_app,
        [
            str(frames),
            str(tmp_path / "mask.png"),
            "--checkpoint",
            str(result.encoder),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert "project checkpoint" in outcome.stderr and "warning" not in outcome.stderr
    assert len(list((tmp_path / "o" / "masks").glob("*.png"))) == 3


def test_torchrun_two_processes_with_gloo(image_tree, tmp_path):
    torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun ships with torch"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [
            torchrun, "--nproc-per-node", "2", "--master-port", "29517", "-m", "hvc_train",
            "--out", str(tmp_path / "ddp"), "--images", str(image_tree), "--image-size", "64",
            "--batch-size", "4", "--max-steps", "3", "--workers", "0", "--device", "cpu",
        ],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "ddp" / "encoder.safetensors").is_file()
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["step"] == 3
    assert done.stderr.count("encoder:") == 1  # rank 0 only


def test_bad_inputs(image_tree, tmp_path):
    with pytest.raises(HvcError, match="no training data"):
        train(TrainConfig(), tmp_path / "a", show_progress=False)
    with pytest.raises(HvcError, match="image folder not found"):
        train(TrainConfig(images=[str(tmp_path / "missing")]), tmp_path / "a", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HvcError, match="no images found"):
        train(TrainConfig(images=[str(tmp_path / "empty")]), tmp_path / "a", show_progress=False)
    train(tiny(image_tree, max_steps=1), tmp_path / "run", show_progress=False)
    with pytest.raises(HvcError, match="already holds a run"):
        train(tiny(image_tree, max_steps=1), tmp_path / "run", show_progress=False)
    train(tiny(image_tree, max_steps=1), tmp_path / "run", force=True, show_progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {**state, "format_version": 99})
    with pytest.raises(HvcError, match="newer than this hvc"):
        train(tiny(image_tree, max_steps=2), tmp_path / "run", resume=True, show_progress=False)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {**state, "architecture": "resnet50"})
    with pytest.raises(HvcError, match="checkpoint is for 'resnet50'"):
        train(tiny(image_tree, max_steps=2), tmp_path / "run", resume=True, show_progress=False)


def test_corrupt_images_are_skipped_and_counted(image_tree, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(image_tree, root)
    data = (root / "set0" / "000.jpg").read_bytes()
    (root / "set0" / "000.jpg").write_bytes(data[:200])
    (root / "set1" / "bad.png").write_text("not an image")
    with pytest.warns(HvcWarning, match=r"skipped \d+ unreadable images"):  # not left to leak
        result = train(tiny(root, max_steps=8, epochs=2), tmp_path / "run", show_progress=False)
    assert result.skipped_images >= 2 and np.isfinite(result.losses).all()


def test_cli_resume_reads_the_saved_config(image_tree, tmp_path):
    from hvc_train.cli import app

    args = ["--out", str(tmp_path / "run"), "--images", str(image_tree), "--image-size", "64"]
    args += ["--batch-size", "4", "--max-steps", "2", "--workers", "0"]
    assert CliRunner().invoke(app, args).exit_code == 0
    resumed = CliRunner().invoke(
        app, ["--out", str(tmp_path / "run"), "--resume", "--max-steps", "3"]
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["image_size"] == 64


def test_config_file_and_flags(tmp_path):
    (tmp_path / "c.toml").write_text('images = ["x"]\nbatch_size = 16\npos_radius = 0.7\n')
    config = load_config(tmp_path / "c.toml", {"batch_size": 8, "lr": None})
    assert (config.batch_size, config.pos_radius, config.lr) == (8, 0.7, 1e-3)
    (tmp_path / "c.yaml").write_text("images: [x]\nnormalization: imagenet\n")
    assert load_config(tmp_path / "c.yaml", {}).normalization == "imagenet"
    (tmp_path / "bad.toml").write_text("batch = 3\n")
    with pytest.raises(HvcError, match=r"unknown config keys \['batch'\]"):
        load_config(tmp_path / "bad.toml", {})


@pytest.mark.realdata
@pytest.mark.slow
def test_short_cpu_run_on_davis2016_train(tmp_path):
    config = TrainConfig(
        videos=[str(DAVIS2016)], video_split="train", image_size=128, batch_size=8,
        max_steps=15, frames_per_video=4, workers=2, log_every=5,
    )  # fmt: skip
    result = train(config, tmp_path / "davis", show_progress=False)
    assert result.steps == 15 and np.isfinite(result.losses).all()
    assert Path(result.encoder).is_file()


def test_periodic_validation_logs_davis_jf(image_tree, tmp_path):
    from tests.test_davis import make_dataset_with_frames

    make_dataset_with_frames(tmp_path / "davis", ["a"])
    config = tiny(
        image_tree, max_steps=3, val_davis=str(tmp_path / "davis"), val_every=2, val_size=None
    )
    result = train(config, tmp_path / "run", show_progress=False)
    assert [s for s, _ in result.validation] == [2, 3]
    assert all(0 <= jf <= 1 for _, jf in result.validation)
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_amp_auto_is_bf16_on_cpus_with_native_bf16():
    assert amp_dtype("auto", torch.device("cuda")) == torch.float16
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert amp_dtype("auto", torch.device("cpu")) == expected
    assert amp_dtype("none", torch.device("cpu")) is None
    assert amp_dtype("auto", torch.device("mps")) is None


def test_layer3_projector_trains_the_layer_that_is_deployed(image_tree, tmp_path):
    network = HVCNetwork("layer3")
    assert not hasattr(network.online_encoder, "layer4")
    assert network.online_projector.conv1.in_channels == 256
    config = tiny(image_tree, max_steps=3, projector_layer="layer3")
    result = train(config, tmp_path / "run", show_progress=False)
    assert np.isfinite(result.losses).all()
    online = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    deployed = load_encoder(result.encoder).encoder.backbone.state_dict()
    for key, value in deployed.items():
        assert torch.equal(value, online[f"online_encoder.{key}"]), key
    with pytest.raises(HvcError, match="projector_layer"):
        TrainConfig(projector_layer="layer2")


def test_an_encoder_is_kept_at_every_checkpoint(image_tree, tmp_path):
    run = tmp_path / "run"
    train(tiny(image_tree, max_steps=3, checkpoint_every=2), run, show_progress=False)
    train(tiny(image_tree, max_steps=5, checkpoint_every=2), run, resume=True, show_progress=False)
    snapshots = sorted(p.name for p in (run / "encoders").iterdir())
    assert snapshots == [f"step-{s:06d}.safetensors" for s in (2, 3, 4, 5)]
    final = load_encoder(run / "encoder.safetensors").encoder.state_dict()
    last = load_encoder(run / "encoders" / snapshots[-1]).encoder.state_dict()
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert read_header(run / "encoders" / snapshots[0]).training["steps"] == 2
