"""Making a training snapshot into a shippable encoder: fp16, a model card, no trainer's paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from hvc_runtime.davis.evaluation import Evaluation, ObjectScores
from hvc_runtime.encoder.checkpoints import (
    CheckpointHeader,
    load_encoder,
    random_encoder,
    read_header,
    save_encoder,
)
from hvc_runtime.utils.errors import HvcError
from hvc_train.config import TrainConfig
from hvc_train.release import app, dev_scores, model_card, release
from tests.conftest import smooth_texture


def _scores(folder, per_video: dict[str, float]) -> None:
    """hvc-eval's CSV files for videos whose every frame scores J = F = the given value."""
    objects = [
        ObjectScores(name, 1, np.full(10, jf / 100), np.full(10, jf / 100))
        for name, jf in per_video.items()
    ]
    Evaluation(objects).write_csv(folder, "val")


@pytest.fixture
def snapshot(tmp_path):
    """A snapshot as hvc-train writes it: its config names the trainer's data by path."""
    trunk = random_encoder(seed=3).backbone
    config = TrainConfig(videos=[str(tmp_path / "DAVIS")], val_davis=str(tmp_path / "DAVIS"))
    training = {"config": config.to_dict(), "steps": 400, "data": config.videos}
    path = tmp_path / "run" / "encoders" / "step-000400.safetensors"
    save_encoder(trunk, path, CheckpointHeader(training=training, git_revision="abc123"))
    return path


@pytest.fixture
def results(tmp_path):
    _scores(tmp_path / "dev", {"blackswan": 80.0, "soapbox": 60.0})
    _scores(tmp_path / "random", {"blackswan": 90.0, "soapbox": 20.0})
    probe = tmp_path / "probe" / "00000.png"
    probe.parent.mkdir()
    Image.fromarray(smooth_texture(96, 160, seed=1)).save(probe)
    return tmp_path / "dev", tmp_path / "random", probe


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_release_writes_fp16_with_a_card_and_no_paths(snapshot, results, tmp_path):
    dev, randomly, probe = results
    card = model_card(
        snapshot,
        name="hvc-r18-test",
        data="DAVIS-2016 train (30 videos)",
        train_hours=1.5,
        machine="2-core CPU",
        dev_results=dev,
        random_results=randomly,
        probe=probe,
    )
    out = release(snapshot, tmp_path / "ship" / "encoder.safetensors", card)
    header = read_header(out)
    assert header.training == card and header.git_revision == "abc123"
    assert card["dev_jf"] == {"blackswan": 80.0, "soapbox": 60.0, "mean": 70.0}
    assert card["random_encoder_dev_jf"]["mean"] == 55.0 and card["steps"] == 400
    assert card["health"]["effective_rank"] > 1 and card["health_probe"] == "probe/00000.png"
    assert not [s for s in _strings(card) if str(tmp_path) in s]
    with safe_open(str(out), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} >= {torch.float16}  # noqa: SIM118
    shipped, source = load_encoder(out), load_encoder(snapshot)
    assert shipped.trained
    frame = torch.from_numpy(smooth_texture(64, 96, seed=2)).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        a, b = shipped.encoder(frame), source.encoder(frame)
    assert torch.nn.functional.cosine_similarity(a, b, dim=1).min() > 0.999


def test_release_refuses_what_is_not_a_snapshot(results, tmp_path):
    dev, randomly, probe = results
    plain = tmp_path / "plain.safetensors"
    save_encoder(random_encoder().backbone, plain, CheckpointHeader())
    with pytest.raises(HvcError, match="not a training snapshot"):
        model_card(
            plain,
            name="x",
            data="y",
            train_hours=0,
            machine="z",
            dev_results=dev,
            random_results=randomly,
            probe=probe,
        )
    with pytest.raises(HvcError, match="cannot read hvc-eval scores"):
        dev_scores(tmp_path / "nowhere")


def test_release_cli_names_the_missing_results_in_one_line(snapshot, results, tmp_path):
    dev, randomly, probe = results
    out = tmp_path / "ship.safetensors"

    def invoke(dev_results):
        args = [snapshot, "--out", out, "--name", "n", "--data", "d", "--train-hours", 1]
        args += ["--machine", "m", "--dev-results", dev_results]
        args += ["--random-results", randomly, "--probe", probe]
        return CliRunner().invoke(app, [str(a) for a in args])

    failed = invoke(tmp_path / "missing")
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert failed.exit_code != 0 and len(errors) == 1 and "missing" in errors[0]
    assert not out.exists()
    done = invoke(dev)
    assert done.exit_code == 0, done.stderr
    assert read_header(out).training["name"] == "n" and "dev J&F 70.0" in done.stdout
