"""The GPU runs' smoke modes run end to end on the CPU (train, export fp16, health, J&F; the
three cause runs side by side), and their data survives being packed into parts and unpacked."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from benchmarks.gpu import bundle, cause, train
from benchmarks.gpu.common import smoke_tree
from hvc_runtime.encoder.checkpoints import load_encoder
from tests.conftest import DAVIS2016, smooth_texture

# an official HVC checkout for the cause run's official part (skipped when there is none)
OFFICIAL = Path(os.environ.get("HVC_OFFICIAL", Path(__file__).parents[1] / "official-hvc"))


@pytest.mark.realdata
@pytest.mark.slow
def test_training_run_smoke(tmp_path):
    args = ["--out", str(tmp_path), "--data", str(DAVIS2016), "--smoke", "--device", "cpu"]
    done = CliRunner().invoke(train.app, args)
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / train.RECORD).read_text())
    assert record["smoke"] and record["environment"]["git_revision"]
    assert record["training"]["steps"] == 4 and record["training"]["stopped_early"] is None
    assert [point["step"] for point in record["health"]] == [0, 2, 4]
    assert record["health"][0]["yardstick"]["effective_rank"] > 1
    encoder = tmp_path / train.ENCODER_FP16
    with safe_open(str(encoder), framework="pt") as handle:
        assert handle.get_tensor("conv1.weight").dtype.itemsize == 2  # fp16
    assert record["encoder"]["sha256"] and "update_dc_share/layer1" in record["encoder_yardstick"]
    for key in ("dev_jf", "random_encoder_dev_jf"):
        assert 0 <= record[key]["jf"] <= 100 and len(record[key]["per_sequence"]) == 2


@pytest.mark.realdata
@pytest.mark.slow
def test_a_run_past_its_budget_exports_the_last_checkpoint_and_resumes(tmp_path):
    """What the budget's SIGTERM does: here the health callback sends it after step 2."""
    davis = smoke_tree(DAVIS2016, tmp_path / "davis")
    config = train.run_config(davis, True, 0, "cpu", health_every=1)

    def stop_at_two(point):
        if point.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    run = tmp_path / "run"
    stopped = train.train_within(config, run, budget_s=600, on_health=stop_at_two)
    assert stopped["steps"] == 2 and "stopped after step 2" in stopped["stopped_early"]
    assert load_encoder(run / "encoder.safetensors").trained
    resumed = train.train_within(config, run, 600, lambda point: None, resume=True)
    assert resumed["steps"] == 4 and resumed["stopped_early"] is None


@pytest.fixture(scope="module")
def cause_record(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("cause")
    args = ["--out", str(out), "--data", str(DAVIS2016), "--smoke", "--device", "cpu"]
    args += ["--epochs", "1", "--official", str(OFFICIAL)]
    done = CliRunner().invoke(cause.app, args)
    assert done.exit_code == 0, done.output
    return json.loads((out / cause.RECORD).read_text()), out


@pytest.mark.realdata
@pytest.mark.slow
def test_cause_run_smoke_trains_both_layouts(cause_record):
    record, out = cause_record
    per_epoch = record["steps_per_epoch"]
    for name in cause.LAYOUTS:
        assert [p["step"] for p in record[f"{name}/health"]] == [0, per_epoch]
        assert record[f"{name}/training"]["steps"] == per_epoch
        assert 0 <= record[f"{name}/clip_iou"] <= 1
    assert "channels-last rank" in (out / cause.TABLE).read_text()


@pytest.mark.realdata
@pytest.mark.slow
def test_cause_run_smoke_runs_the_official_code(cause_record):
    record, out = cause_record
    if not (OFFICIAL / "train_vos.py").is_file():
        assert "no official checkout" in record["official_skipped"]
        pytest.skip(f"official part not run: no official checkout at {OFFICIAL} (HVC_OFFICIAL)")
    assert record["official/training"]["checkpoints"] == ["hvc_epoch_1.pth"]
    assert [p["step"] for p in record["official/health"]] == [record["steps_per_epoch"]]
    assert 0 <= record["official/clip_iou"] <= 1
    assert "Epoch: [1]" in (out / "official.log").read_text()


def _tiny_davis(root: Path) -> Path:
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        listing = root / "ImageSets" / "480p" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{n}\n" for n in names))
        for k, name in enumerate(names):
            for frame in range(3):
                path = root / "JPEGImages" / "480p" / name / f"{frame:05d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(smooth_texture(64, 96, seed=10 * k + frame)).save(path)
                mask = root / "Annotations" / "480p" / name / f"{frame:05d}.png"
                mask.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((64, 96), 255 * (frame % 2), np.uint8)).save(mask)
    return root


def test_bundle_parts_unpack_to_the_data(tmp_path):
    davis = _tiny_davis(tmp_path / "davis")
    official = tmp_path / "official"
    (official / "core").mkdir(parents=True)
    (official / "train_vos.py").write_text("print('official')\n")
    (official / "core" / "config.py").write_text("x = 1\n")
    packed = tmp_path / "parts"
    bundle.pack(out=packed, data=davis, official=official, part_mib=0.02)  # ~20 KB parts
    parts = sorted(packed.iterdir())
    assert len(parts) >= 2 and all((p / bundle.MANIFEST).is_file() for p in parts)
    assert all(next(p.glob("part*")).stat().st_size <= 0.02 * 2**20 for p in parts)
    into = tmp_path / "received"
    bundle.unpack(parts[:1], into=into)  # parts may arrive one at a time
    assert not (into / "data").exists()
    bundle.unpack(parts[1:], into=into)
    data = into / "data"
    frame = "davis2016/JPEGImages/480p/b/00002.jpg"
    assert (data / frame).read_bytes() == (davis / "JPEGImages/480p/b/00002.jpg").read_bytes()
    assert (data / "davis2016/Annotations/480p/c/00001.png").is_file()
    assert not (data / "davis2016/Annotations/480p/a").exists()  # train masks are not needed
    assert (data / "official-hvc/core/config.py").read_text() == "x = 1\n"
    assert (data / "COMMIT").read_text().strip()
    bundle.unpack(parts[:1], into=into)  # already unpacked: nothing happens
    assert not (into / "parts").exists()


def test_bundle_in_one_part_by_default_and_bad_input_is_one_line(tmp_path):
    davis = _tiny_davis(tmp_path / "davis")
    bundle.pack(out=tmp_path / "one", data=davis)
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["p0"]
    runner = CliRunner()
    for args, line in (
        (["pack", "--out", str(tmp_path / "x"), "--data", str(davis), "--part-mib", "0"],
         "error: --part-mib 0.0: must be a positive number of MiB"),
        (["unpack", str(davis)], f"error: {davis}: not a part folder of a packed bundle"),
    ):  # fmt: skip
        done = runner.invoke(bundle.app, args)
        assert done.exit_code == 1 and done.stderr.strip().startswith(line), done.stderr
