"""Small datasets without tricks: the repeat factor, one data loader for the whole run, exact
resume across epochs with augmentation on; recipes and the flags of every config key."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hvc_runtime.utils.errors import HvcError
from hvc_train.augment import recolour
from hvc_train.checkpointing import load_checkpoint
from hvc_train.cli import main as cli_main
from hvc_train.config import TrainConfig, load_config
from hvc_train.data import BatchStream, CropPairDataset, index_videos, merge
from hvc_train.loop import train
from hvc_train.recipes import CPU, OFFICIAL
from hvc_train.trainer import Trainer
from tests.conftest import smooth_texture


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A DAVIS-layout root: 3 videos of 5 frames, 40×48."""
    root = tmp_path_factory.mktemp("videos")
    for v in range(3):
        folder = root / "JPEGImages" / "480p" / f"video{v}"
        folder.mkdir(parents=True)
        for t in range(5):
            frame = smooth_texture(40, 48, seed=10 * v + t, cells=4)
            Image.fromarray(frame).save(folder / f"{t:05d}.jpg")
    return root


def tiny(root, **changes) -> TrainConfig:
    values = dict(
        videos=[str(root)], image_size=32, batch_size=4, frames_per_video=3, workers=0,
        health_every=0, log_every=1, device="cpu",
    )  # fmt: skip
    return TrainConfig(**{**values, **changes})


def test_repeat_is_the_data_listed_repeat_times(videos, tmp_path):
    index = index_videos(videos)
    repeated = BatchStream(index, 3, seed=5, batch_size=4, repeat=3)
    listed = BatchStream(merge([index] * 3), 3, seed=5, batch_size=4)
    assert repeated.steps_per_epoch() == listed.steps_per_epoch() == 7  # 27 samples
    for epoch in range(2):
        a, b = repeated.epoch_items(epoch), listed.epoch_items(epoch)
        assert [index.files[f] for *_, f in a] == [listed.index.files[f] for *_, f in b]
    once = [f for *_, f in BatchStream(index, 3, 5, 4).epoch_items(0)]
    assert len(once) == 9 and len(set(once)) == 9  # 3 of each video's 5 frames
    by_repeat = train(tiny(videos, repeat=2, max_steps=2), tmp_path / "r", show_progress=False)
    by_list = train(
        tiny(videos, videos=[str(videos)] * 2, max_steps=2), tmp_path / "l", show_progress=False
    )
    assert by_repeat.losses == by_list.losses and len(by_repeat.losses) == 2


def test_one_loader_iterator_serves_every_epoch(videos, tmp_path, monkeypatch):
    iterators = []
    original = DataLoader.__iter__

    def counting(self):
        iterators.append(self)
        return original(self)

    monkeypatch.setattr(DataLoader, "__iter__", counting)
    config = tiny(videos, max_steps=7, workers=1)  # 9 samples: batches of 4, 4, 1 per epoch
    result = train(config, tmp_path / "run", show_progress=False)
    assert result.steps == 7 and len(iterators) == 1
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["position"]) == (2, 4)


def test_resume_is_exact_across_epochs_with_repeat_and_augmentation(videos, tmp_path):
    changes = dict(repeat=2, color_jitter=0.4, grayscale=0.5, workers=2, warmup_steps=3)
    whole = train(tiny(videos, max_steps=8, **changes), tmp_path / "whole", show_progress=False)
    first = train(tiny(videos, max_steps=6, **changes), tmp_path / "parts", show_progress=False)
    rest = train(
        tiny(videos, max_steps=8, **changes), tmp_path / "parts", resume=True, show_progress=False
    )
    assert len(whole.losses) == 8 and first.losses + rest.losses == whole.losses
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    assert (a["epoch"], a["position"]) == (b["epoch"], b["position"]) == (1, 12)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_recolour_changes_colours_not_positions(videos):
    view = torch.from_numpy(smooth_texture(32, 32, seed=3)).permute(2, 0, 1).contiguous()
    rng = np.random.default_rng(0)
    assert recolour(view, rng, 0.0, 0.0) is view
    grey = recolour(view, rng, 0.0, 1.0)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    jittered = recolour(view, np.random.default_rng(1), 0.4, 0.0)
    assert torch.equal(jittered, recolour(view, np.random.default_rng(1), 0.4, 0.0))
    assert not torch.equal(jittered, view)
    dataset = CropPairDataset(index_videos(videos), seed=1, size=32)
    plain = dataset[(0, 3, 2)]
    dataset.color_jitter, dataset.grayscale = 0.4, 1.0
    coloured = dataset[(0, 3, 2)]
    assert torch.equal(plain[2], coloured[2]) and torch.equal(plain[3], coloured[3])
    assert not torch.equal(plain[0], coloured[0])


def test_recipes_and_their_layers(tmp_path):
    official = load_config(None, {"recipe": "official"})
    assert all(getattr(official, key) == value for key, value in OFFICIAL.items())
    assert official == TrainConfig()  # the default is the official recipe
    assert not official.channels_last and official.deterministic  # as the official code runs
    (tmp_path / "c.toml").write_text('recipe = "official"\nseed = 3\n')
    config = load_config(tmp_path / "c.toml", {"lr": 5e-4})
    assert (config.seed, config.lr, config.normalization) == (3, 5e-4, "cifar10")
    assert load_config(None, {"recipe": "official", "min_crop": 0.3}).min_crop == 0.3
    saved = dataclasses.replace(official, seed=9).to_dict()
    assert load_config(None, {}, base=saved) == dataclasses.replace(official, seed=9)
    cpu = load_config(None, {"recipe": "cpu"})  # the official objective at a CPU's scale
    assert dataclasses.replace(cpu, **{k: getattr(official, k) for k in CPU}) == official
    assert (cpu.image_size, cpu.batch_size, cpu.channels_last, cpu.amp) == (192, 32, True, "auto")
    assert (official.projector_layer, cpu.projector_layer) == ("layer4", "layer3")


def test_default_trains_in_the_default_memory_layout():
    """Channels-last is an option; the default keeps PyTorch's layout, as the official code."""
    for channels_last in (False, True):
        config = TrainConfig(images=["x"], channels_last=channels_last)
        trainer = Trainer(config, torch.device("cpu"), schedule_steps=10, samples_per_epoch=4)
        weight = trainer.network.online_encoder.layer1[0].conv1.weight
        batch = trainer.normalize(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
        for tensor in (weight, batch):
            assert tensor.is_contiguous(memory_format=torch.channels_last) == channels_last
            assert tensor.is_contiguous() != channels_last


def test_every_config_key_has_a_flag():
    flags = set(inspect.signature(cli_main).parameters)
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= flags
    assert "recipe" in flags


def test_split_lists_are_taken_whole_and_never_guessed(videos, tmp_path):
    root = Path(shutil.copytree(videos, tmp_path / "davis"))
    sets = root / "ImageSets"
    (sets / "2016").mkdir(parents=True)
    (sets / "2016" / "train.txt").write_text("video0\nvideo2\n")
    assert len(index_videos(root, "train").groups) == 2
    with pytest.raises(HvcError, match="no ImageSets list for split 'val'"):
        index_videos(root, "val")
    (sets / "2017").mkdir()
    (sets / "2017" / "train.txt").write_text("video1\nvideo0\nmissing-a\nmissing-b\n")
    with pytest.raises(HvcError, match=r"several ImageSets lists \(2016/train, 2017/train\)"):
        index_videos(root, "train")
    assert len(index_videos(root, "2016/train").groups) == 2
    with pytest.raises(HvcError, match=r"lists videos with no frames .*: missing-a, missing-b$"):
        index_videos(root, "2017/train")
