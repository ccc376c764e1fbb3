"""The quick validation proxy (clip IoU): it is the DAVIS J of the frames it scores, it orders
the collapsed run below a random encoder on real clips, and training logs it or the full J&F."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.encoder.checkpoints import load_encoder, random_encoder
from hvc_runtime.encoder.network import InferenceEncoder
from hvc_runtime.segmenter import Segmenter
from hvc_train.config import TrainConfig
from hvc_train.loop import train
from hvc_train.validation import clip_iou, inference_trunk
from tests.conftest import DAVIS2016, SHARED_DATA, smooth_texture
from tests.test_davis import make_dataset

COLLAPSED = SHARED_DATA / "collapsed-run" / "encoder.safetensors"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    """One 6-frame sequence with two objects (the second drifts) on textured frames."""
    root = tmp_path_factory.mktemp("davis")
    make_dataset(root, ["a"])
    for t in range(6):
        frame = smooth_texture(40, 60, seed=t % 2, cells=4)
        Image.fromarray(frame).save(root / "JPEGImages" / "480p" / "a" / f"{t:05d}.jpg")
    return root


def test_clip_iou_is_the_davis_j_of_the_frames_it_scores(davis, tmp_path):
    trunk = random_encoder().backbone
    proxy = clip_iou(trunk, davis, "val", None, CPU, frames=5)  # frames 0-4, scores 1-4
    segmenter = Segmenter(InferenceEncoder(inference_trunk(trunk)).eval(), device=CPU)
    propagate_sequence(DavisDataset(davis), "a", segmenter, tmp_path)
    j = evaluate(DavisDataset(davis), tmp_path, ["a"]).j_mean  # drops frames 0 and 5
    assert proxy == pytest.approx(j, abs=1e-12) and 0.2 < j < 1


@pytest.mark.parametrize(("metric", "tag"), [("proxy", "val/clip_iou"), ("jf", "val/J&F")])
def test_training_logs_the_chosen_validation(davis, tmp_path, metric, tag):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        Image.fromarray(smooth_texture(40, 48, seed=k, cells=4)).save(images / f"{k}.png")
    config = TrainConfig(
        images=[str(images)], image_size=32, batch_size=2, max_steps=1, workers=0,
        health_every=0, device="cpu", val_davis=str(davis), val_metric=metric, val_size=None,
    )  # fmt: skip
    result = train(config, tmp_path / "run", show_progress=False)
    assert [step for step, _ in result.validation] == [1] and 0 < result.validation[0][1] < 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars(tag)] == pytest.approx([result.validation[0][1]])


@pytest.mark.realdata
def test_clip_iou_ranks_the_collapsed_run_below_a_random_encoder():
    """J&F 30.2 against 62.7 on the GPU; the proxy must order them the same way, clearly."""
    scores = {
        name: clip_iou(trunk, DAVIS2016, "val", short_side=120, device=CPU, frames=8)
        for name, trunk in (
            ("random", random_encoder().backbone),
            ("collapsed", load_encoder(COLLAPSED).encoder.backbone),
        )
    }
    assert 0 < scores["collapsed"] < scores["random"] - 0.1 < 1, scores
