"""hvc-train as a user meets it: bad config files and flags, resuming nothing, failed starts,
and library messages that name config keys, not flags. Each check runs the command on real
files and reads the one line it prints."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from hvc_runtime.utils.errors import HvcError
from hvc_train.cli import app
from hvc_train.config import TrainConfig
from hvc_train.loop import train
from hvc_train.rundir import RunExists
from tests.conftest import image_tree


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_tree(tmp_path_factory.mktemp("images"), 6, 40, 48)


def small(images, out, *extra: str) -> list[str]:
    """Arguments of a 1-step run on 32-pixel crops."""
    return [
        "--out", str(out), "--images", str(images), "--image-size", "32", "--batch-size", "2",
        "--max-steps", "1", "--workers", "0", "--health-every", "0", "--device", "cpu", *extra,
    ]  # fmt: skip


def error_line(outcome) -> str:
    """The command's only stderr line, which must be an error line (exit status 1)."""
    lines = outcome.stderr.strip().splitlines()
    assert outcome.exit_code == 1, outcome.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    return lines[0]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.toml", "batch_size = 4\nlr = 0.001 0.002\n", "(at line 2, column 12)"),
        ("bad.yaml", "batch_size: 4\nlr: [1e-3\nseed: 2\n", "line 3, column"),
        ("keys.toml", "batch = 3\n", "unknown config keys ['batch'] (did you mean 'batch_size'?)"),
        ("type.toml", 'batch_size = "x"\n', "batch_size = 'x': must be an integer"),
        ("type.yaml", "channels_last: maybe\n", "channels_last = 'maybe': must be true or false"),
        ("range.yaml", "min_crop: 2\n", "min_crop = 2.0: crop range up to max_crop 1.0"),
        ("list.toml", "[section]\nx = 1\n", "unknown config keys ['section']"),
        ("many.toml", "".join(f"k{k} = 1\n" for k in range(40)), "['k0', 'k1', 'k10'] and 37 more"),
        ("long.yaml", "lr: " + "9" * 5000 + "x\n", "lr = '999999999999"),
        ("long.toml", "[" + "a" * 3000 + "]\n", "unknown config keys ['aaaaaaaa"),
    ],
)
def test_config_file_problems_are_one_line_naming_the_file(tmp_path, images, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    line = error_line(invoke(small(images, tmp_path / "run", "--config", str(path))))
    assert line.startswith(f"error: {path}: ") and expected in line
    assert len(line) < len(str(path)) + 150, line  # a short excerpt, never the file's text
    assert not (tmp_path / "run").exists()


def test_a_resume_whose_saved_config_is_broken_says_so(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "config.json").write_text('{"batch_size": 4, "lr"')  # cut short
    line = error_line(invoke(["--out", str(out), "--resume"]))
    assert line.startswith(f"error: {out / 'config.json'}: the run's saved config is not readable")


def test_flag_problems_name_the_flag(tmp_path, images):
    line = error_line(invoke(small(images, tmp_path / "run", "--grayscale", "1.5")))
    assert line == "error: --grayscale 1.5: must be within [0, 1]"
    line = error_line(invoke(small(images, tmp_path / "run", "--recipe", "fastest")))
    assert line == "error: --recipe fastest: choose one of default, official, cpu"


@pytest.mark.parametrize("state", ["missing", "empty", "failed start"])
def test_resume_without_a_run_names_the_folder_and_the_checkpoint(tmp_path, state):
    out = tmp_path / "run"
    if state != "missing":
        out.mkdir()
    if state == "failed start":
        (out / "config.json").write_text(json.dumps({"images": ["x"]}))
    line = error_line(invoke(["--out", str(out), "--resume"]))
    assert line.startswith(f"error: {out}: no run to resume")
    assert "does not exist" in line if state == "missing" else "holds no checkpoint.pt" in line
    assert out.exists() == (state != "missing")


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, images):
    broken = tmp_path / "broken"
    broken.mkdir()
    for k in range(3):
        (broken / f"{k}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    args = small(broken, out)
    args[args.index("--workers") + 1] = "1"  # the error comes back from a worker process
    line = error_line(invoke(args))
    assert line.endswith("none of the 3 images can be read") and "Traceback" not in line
    assert not out.exists()
    (tmp_path / "kept").mkdir()  # a folder the user made is kept, emptied of run files
    error_line(invoke(small(broken, tmp_path / "kept")))
    assert list((tmp_path / "kept").iterdir()) == []
    done = invoke(small(images, out))
    assert done.exit_code == 0, done.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "encoder.safetensors").is_file()


def test_leftovers_of_a_killed_start_are_reused_other_files_are_not(tmp_path, images):
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard" / "events.out.tfevents.1").write_bytes(b"old")
    (out / "config.json").write_text("{}")
    done = invoke(small(images, out))
    assert done.exit_code == 0, done.stderr
    assert not (out / "tensorboard" / "events.out.tfevents.1").exists()
    line = error_line(invoke(small(images, out)))
    assert line == (
        f"error: {out}: folder already holds a run (checkpoint.pt); "
        "pass --resume to continue it or --force to replace it"
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    line = error_line(invoke(small(images, tmp_path / "mine")))
    assert "folder is not empty and holds no run (notes.txt)" in line and "--force" in line
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_library_messages_name_config_keys_not_flags(tmp_path, images):
    with pytest.raises(HvcError) as missing:
        train(TrainConfig(), tmp_path / "a", show_progress=False)
    assert str(missing.value) == "no training data: the config sets neither videos nor images"
    config = TrainConfig(images=[str(images)], image_size=32, batch_size=2, max_steps=1)
    config.workers, config.health_every, config.device = 0, 0, "cpu"
    train(config, tmp_path / "b", show_progress=False)
    with pytest.raises(RunExists) as busy:
        train(config, tmp_path / "b", show_progress=False)
    assert str(busy.value) == (
        f"{tmp_path / 'b'}: folder already holds a run (checkpoint.pt); "
        "set resume=True to continue it or force=True to replace it"
    )
    (tmp_path / "c").mkdir()
    with pytest.raises(HvcError) as nothing:
        train(config, tmp_path / "c", resume=True, show_progress=False)
    assert (
        str(nothing.value)
        == f"{tmp_path / 'c'}: no run to resume: the folder holds no checkpoint.pt"
    )


def test_an_unreadable_image_is_named_once(tmp_path, images, caplog):
    """However often it is sampled; a dataset of unreadable images says so, not '16 in a row';
    the hidden files another system leaves beside images are not taken for images."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(images / "0.jpg", folder / "0.jpg")
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    (folder / "._0.jpg").write_bytes(b"\x00\x05\16\x07")  # AppleDouble
    done = invoke(small(folder, tmp_path / "run", "--repeat", "4", "--max-steps", "2"))
    assert done.exit_code == 0, done.stderr
    assert (
        "2 unreadable images skipped" in done.stderr or "unreadable images skipped" in done.stderr
    )
    skips = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert len(skips) == 1 and "bad.jpg" in skips[0] and "._0.jpg" not in skips[0], skips
    caplog.clear()
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "bad.jpg").write_bytes(b"not a jpeg")
    line = error_line(invoke(small(alone, tmp_path / "run2")))
    assert line.endswith("bad.jpg: none of the 1 images can be read")
    assert sum("skipping unreadable" in r.getMessage() for r in caplog.records) == 1


def test_help_shows_the_default_recipes_values():
    """As values (`[default: 128]`, not `(128)`), each beside its own flag."""
    shown = " ".join(CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout.split())
    config = TrainConfig()  # the default recipe
    for flag, default in (("--batch-size", 128), ("--lr", config.lr), ("--workers", 4)):
        after = shown[shown.index(f"{flag} <") :]
        assert after[: after.index("[default:")].count(" --") == 0, flag  # its own default
        assert after[after.index("[default:") :].startswith(f"[default: {default}]"), flag
    assert "(128)" not in shown and "--compile / --no-compile" in shown


def test_flags_override_only_what_they_name(tmp_path, images):
    """The defaults --help shows are not passed on as flags: a config file's values stand
    unless their flag is given, even a flag given at its default value."""
    config = tmp_path / "c.toml"
    config.write_text("batch_size = 2\nimage_size = 32\nseed = 7\nworkers = 0\n")
    args = ["--out", str(tmp_path / "run"), "--images", str(images), "--config", str(config)]
    args += ["--max-steps", "1", "--health-every", "0", "--device", "cpu", "--seed", "42"]
    outcome = invoke(args)
    assert outcome.exit_code == 0, outcome.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["batch_size"], saved["image_size"], saved["seed"]) == (2, 32, 42)


def test_a_second_run_into_a_folder_being_trained_is_refused(tmp_path, images):
    """Two runs into one folder would overwrite each other's checkpoints: the second is refused
    at once, naming the first process, and leaves the folder as it was."""
    import os

    from hvc_runtime.utils.locks import FolderLock

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what the first run has written so far
    held = FolderLock(out, ".hvc-train.lock", "hvc-train")  # as the first run holds it
    for extra in ([], ["--force"]):
        line = error_line(invoke(small(images, out, *extra)))
        assert line.startswith(f"error: {out}: another hvc-train (process {os.getpid()})")
    assert sorted(p.name for p in out.iterdir()) == [".hvc-train.lock", "config.json"]
    held.release()
    done = invoke(small(images, out, "--force"))
    assert done.exit_code == 0, done.stderr
    assert ".hvc-train.lock" not in [p.name for p in out.iterdir()]


def test_torchrun_ranks_stop_together_when_rank_0_cannot_claim_the_folder(tmp_path, images):
    """Rank 0 alone claims the run folder; when another run holds it, every rank stops with
    the reason instead of waiting for rank 0 at a barrier (and failing there with a
    traceback once torchrun stops rank 0's group)."""
    import os
    import signal
    import subprocess
    import sys

    from hvc_runtime.utils.locks import FolderLock

    out = tmp_path / "run"
    out.mkdir()
    held = FolderLock(out, ".hvc-train.lock", "hvc-train")  # as the first run holds it
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    process = subprocess.Popen(
        [*launch, "2", "-m", "hvc_train", *small(images, out)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=True,  # so that a rank left waiting can be stopped with its launcher
    )
    try:
        _, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("a rank was left waiting for rank 0") from None
    finally:
        held.release()
    assert process.returncode != 0
    refusal = f"error: {out}: another hvc-train (process {os.getpid()})"
    assert refusal in stderr and "[rank" not in stderr, stderr  # no rank fails at a barrier


WHOLE = ("--min-crop", "0.99", "--max-crop", "1", "--max-steps", "3")


def test_a_crop_of_a_whole_image_warns_of_nothing(tmp_path, images):
    """Crops of the full width are views of PIL's read-only array: copied before PyTorch takes
    them, so no run prints PyTorch's non-writable-array warning (shown once per process: the
    run is a process of its own)."""
    import subprocess
    import sys

    done = subprocess.run(
        # crops of 99-100% of a 48x40 image: nearly all of them of its whole width
        [sys.executable, "-m", "hvc_train", *small(images, tmp_path / "run", *WHOLE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "not writable" not in done.stderr and "UserWarning" not in done.stderr, done.stderr
