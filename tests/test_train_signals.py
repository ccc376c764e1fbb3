"""SIGTERM and SIGINT during hvc-train, sent to a real process: the run stops at a step
boundary with a checkpoint that resumes exactly, and a second signal stops it at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from hvc_train.checkpointing import load_checkpoint
from hvc_train.config import TrainConfig, saved_config
from hvc_train.loop import train
from tests.conftest import image_tree


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_tree(tmp_path_factory.mktemp("images"), 6, 48, 64)


class Training:
    """`python -m hvc_train ...` in a subprocess, its stderr read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hvc_train", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, as a scheduler's job
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for line in self.lines):
            assert self.process.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no '{prefix}' line in {timeout} s"
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, self.lines[-1] if self.lines else ""


def run_args(images, out, size: int, batch: int, workers: int) -> list[str]:
    return [
        "--out", str(out), "--images", str(images), "--image-size", str(size),
        "--batch-size", str(batch), "--max-steps", "400", "--epochs", "400",
        "--workers", str(workers),
        "--log-every", "1", "--health-every", "0", "--checkpoint-every", "1000",
        "--device", "cpu",
    ]  # fmt: skip


def test_sigterm_checkpoints_at_a_step_boundary_and_resume_matches(images, tmp_path):
    out = tmp_path / "run"
    training = Training(*run_args(images, out, size=32, batch=2, workers=1))
    training.wait_for_line("step 2/400")
    training.process.send_signal(signal.SIGTERM)
    code, last = training.finish()
    assert code == 143, "\n".join(training.lines)
    found = re.fullmatch(
        rf"interrupted \(SIGTERM\): stopped after step (\d+) of 400; checkpoint "
        rf"{re.escape(str(out / 'checkpoint.pt'))}; continue with: hvc-train --out "
        rf"{re.escape(str(out))} --resume",
        last,
    )
    assert found, last
    stopped = int(found.group(1))
    assert 2 <= stopped < 400 and load_checkpoint(out / "checkpoint.pt")["step"] == stopped
    assert not list(out.glob(".checkpoint.pt.*"))  # written atomically, no temporary left

    config = TrainConfig(**{**saved_config(out), "max_steps": stopped + 3})
    whole = train(config, tmp_path / "whole", show_progress=False)
    rest = train(config, out, resume=True, show_progress=False)
    assert len(rest.losses) == 3 and rest.losses == whole.losses[stopped:]
    a = load_checkpoint(out / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_to_the_whole_process_group_stops_at_a_step_boundary(
    images, tmp_path, signum, code
):
    """As a scheduler (`kill -- -PGID`) or a terminal's Ctrl-C sends it: the data workers get
    it too."""
    out = tmp_path / "run"
    training = Training(*run_args(images, out, size=32, batch=2, workers=2))
    training.wait_for_line("step 2/400")
    os.killpg(training.process.pid, signum)
    exit_code, last = training.finish()
    assert exit_code == code, "\n".join(training.lines)
    expected = f"interrupted ({signal.Signals(signum).name}): stopped after step "
    assert last.startswith(expected), "\n".join(training.lines)
    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 2


def test_a_second_sigint_stops_at_once(images, tmp_path):
    out = tmp_path / "run"
    training = Training(*run_args(images, out, size=128, batch=6, workers=0))
    training.wait_for_line("step 1/400")
    training.process.send_signal(signal.SIGINT)
    time.sleep(0.3)  # well inside step 2, which takes seconds at this size
    training.process.send_signal(signal.SIGINT)
    code, last = training.finish()
    assert code == 130, "\n".join(training.lines)
    assert last == "interrupted (SIGINT): stopped at once during step 2; no checkpoint was written"
    assert not out.exists()  # a run without a checkpoint leaves nothing behind


EXIT_WITH_A_LIVE_WORKER = """
from torch.utils.data import DataLoader
from hvc_train.worker_signals import stop_signals_only_from
import os
loader = DataLoader(range(1000), batch_size=1, num_workers=1,
                    worker_init_fn=stop_signals_only_from(os.getpid()))
batches = iter(loader)
next(batches)  # a worker is running; `batches` stays alive until the interpreter exits
print("serving", flush=True)
"""


def test_a_process_that_exits_with_a_worker_alive_still_exits():
    """multiprocessing ends live workers at exit with the owner's SIGTERM; a worker that
    ignored it would leave the owner waiting forever."""
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_A_LIVE_WORKER],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0 and done.stdout == "serving\n", done.stderr
