"""The packaged default encoder: it ships, loads, is trained (healthy, far from a random and
from a collapsed encoder), its card names no path of the machine that trained it, and it gives
the dev J&F its card records."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from hvc_runtime.cli import eval_app
from hvc_runtime.encoder import checkpoints
from hvc_runtime.encoder.checkpoints import (
    DEFAULT_CHECKPOINT,
    load_encoder,
    random_encoder,
    read_header,
)
from hvc_runtime.utils.errors import HvcError
from hvc_train.release import dev_scores, health
from tests.conftest import DAVIS2016, SHARED_DATA

DEV_VIDEOS = {"blackswan", "bmx-trees", "car-shadow", "dance-twirl", "soapbox"}
CARD_KEYS = {"name", "data", "steps", "train_hours", "machine", "code_revision", "config"}
COLLAPSED = SHARED_DATA / "collapsed-run" / "encoder.safetensors"
PROBE = DAVIS2016 / "JPEGImages" / "480p" / "blackswan" / "00000.jpg"


@pytest.fixture(scope="module")
def card() -> dict:
    return read_header(DEFAULT_CHECKPOINT).training


def _strings(value):
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_the_default_ships_in_fp16_and_loads_as_trained(card):
    assert DEFAULT_CHECKPOINT.stat().st_size < 15e6
    with safe_open(str(DEFAULT_CHECKPOINT), framework="pt") as handle:
        kinds = {handle.get_tensor(k).dtype for k in handle.keys()}  # noqa: SIM118
    assert torch.float16 in kinds and torch.float32 not in kinds
    loaded = load_encoder()
    assert loaded.trained and loaded.description.startswith(f"default encoder {card['name']}")
    assert set(card) >= CARD_KEYS and set(card["dev_jf"]) == DEV_VIDEOS | {"mean"}
    assert not [s for s in _strings(card) if s.startswith(("/", "~")) or ":\\" in s]


def test_a_missing_default_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "DEFAULT_CHECKPOINT", tmp_path / "gone.safetensors")
    with pytest.raises(HvcError, match="packaged default encoder is missing"):
        load_encoder()


@pytest.mark.realdata
def test_the_default_is_healthy_and_far_from_random_and_collapsed(card):
    figures = health(load_encoder().encoder.backbone, PROBE)
    for key, value in card["health"].items():
        assert math.isclose(figures[key], value, rel_tol=0.02, abs_tol=1e-3), key
    randomly = health(random_encoder().backbone, PROBE)
    collapsed = health(load_encoder(COLLAPSED).encoder.backbone, PROBE)
    assert 3 * collapsed["effective_rank"] < figures["effective_rank"]
    assert figures["effective_rank"] < 0.8 * randomly["effective_rank"]
    assert figures["max_dc_share"] < 0.2 < collapsed["max_dc_share"]


@pytest.mark.realdata
@pytest.mark.slow
def test_the_default_gives_its_recorded_dev_jf_on_a_dev_video(card, tmp_path):
    args = [str(tmp_path / "results"), "--davis", str(DAVIS2016), "--run", "--single-object"]
    outcome = CliRunner().invoke(eval_app, [*args, "--sequences", "car-shadow", "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.stderr
    scored = dev_scores(tmp_path / "results")
    assert scored["car-shadow"] == pytest.approx(card["dev_jf"]["car-shadow"], abs=0.5)
