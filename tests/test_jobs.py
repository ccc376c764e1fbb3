"""`hvc-run --jobs`: a job list checked whole, shared out across processes, failing job by job,
interrupted and resumed; mask folders; read-ahead; `hvc-eval` on the result folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvc_runtime.cli import eval_app, run_app
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate
from hvc_runtime.io.frames import FrameSource
from hvc_runtime.io.masks import read_mask, write_palette_png
from hvc_runtime.io.prefetch import preload
from hvc_runtime.runs import read_job_list
from hvc_runtime.runs.job_list import share_out
from hvc_runtime.utils.errors import HvcError
from tests.conftest import panning_clip, smooth_texture
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_davis import make_dataset, make_dataset_with_frames

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--no-overlay", "--no-pad-context"]


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("video,mask,name\n" + "".join(f"{v},{m},{n}\n" for v, m, n in rows))
    return path


def clips(root: Path, lengths: list[int]) -> list[tuple[str, str, str]]:
    """Panning clips of these lengths in root/v<k>/, as job rows (paths relative to root)."""
    rows = []
    for k, frames in enumerate(lengths):
        (root / f"v{k}").mkdir()
        panning_clip(root / f"v{k}", frames=frames)
        rows.append((f"v{k}/clip.mp4", f"v{k}/mask.png", f"job{k}"))
    return rows


def env() -> dict:
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


# --- the list ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "first line must be the header video,mask,name (an empty file)"),
        ("video,name,mask\na.mp4,m.png,a\n", "header video,mask,name (video,name,mask)"),
        ("video,mask,name\n", "holds no job"),
        ("video,mask,name\na.mp4,m.png\n", "jobs.csv:2: a job needs a video, a mask and a name"),
        ("video,mask,name\na.mp4,m.png,../up\n", "'../up' is not a safe folder name"),
        ("video,mask,name\na.mp4,m.png,.hidden\n", "'.hidden' is not a safe folder name"),
        ("video,mask,name\na.mp4,m.png,jobs.json\n", "'jobs.json' is not a safe folder name"),
        ("video,mask,name\na.mp4,m.png,A\nb.mp4,m.png,a\n", "jobs.csv:3: job name 'a' is taken"),
    ],
)
def test_a_bad_list_is_refused_before_anything_runs(tmp_path, text, fragment):
    (tmp_path / "jobs.csv").write_text(text)
    code, _, stderr = run_cli(run_app, ["--jobs", tmp_path / "jobs.csv", "--out", tmp_path / "R"])
    assert_one_line_error(code, stderr, "jobs.csv", fragment)
    assert not (tmp_path / "R").exists()


LONG = "c.mp4,m.png,c\n" * 10000  # past the CSV module's field limit once a quote is open


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('video,mask,name\na.mp4,m.png,a\n"b.mp4,m.png,b\nc.mp4,m.png,c\n', "jobs.csv:3: a quote "),
        ('video,mask,name\n"a.mp4\nx",m.png,a\nb.mp4,m.png,b\n', "jobs.csv:2: a quote opened"),
        ('video,mask,name\na.mp4,m.png,"a\n' + LONG, "jobs.csv:2: not a readable CSV row"),
        ('video,mask,name\na.mp4,m.png,"a\n' + LONG[:1400], "runs on to line 102: 'a…'"),
        (",".join(["column"] * 400) + "\n", "header video,mask,name (column,column,column,"),
        ("video,mask,name\na.mp4,m.png," + "n" * 5000 + "\n", "job name 'nnnnnnnnn"),
    ],
)
def test_errors_quote_at_most_an_excerpt_of_the_list(tmp_path, text, fragment):
    """An unclosed quote swallows the rest of the file into one field: the error names the
    line where it opens and quotes a few characters, never the file."""
    (tmp_path / "jobs.csv").write_text(text)
    code, _, stderr = run_cli(run_app, ["--jobs", tmp_path / "jobs.csv", "--out", tmp_path / "R"])
    assert_one_line_error(code, stderr, fragment)
    assert len(stderr) < len(str(tmp_path)) + 250 and "c.mp4" not in stderr, stderr


def test_list_paths_are_relative_to_the_list(tmp_path):
    (tmp_path / "lists").mkdir()
    path = write_csv(tmp_path / "lists" / "jobs.csv", [("../v/a.mp4", "/abs/m.png", "a")])
    (job,) = read_job_list(path)
    assert job.video == tmp_path / "v" / "a.mp4" and job.mask == Path("/abs/m.png")
    with pytest.raises(HvcError, match="job list not found"):
        read_job_list(tmp_path / "nope.csv")


def test_share_out_longest_first_to_the_least_loaded():
    frames = {"a": 10, "b": 80, "c": 40, "d": 40, "e": 5}
    assert share_out(frames, 2) == [["b", "a"], ["c", "d", "e"]]  # loads 90 and 85
    assert share_out(frames, 1) == [["b", "c", "d", "a", "e"]]
    assert share_out({"a": 1}, 3) == [["a"], [], []]


# --- one process --------------------------------------------------------------------------------


def test_one_process_bad_job_fails_alone_and_a_rerun_resumes(tmp_path):
    rows = clips(tmp_path, [5, 4, 3])
    rows.insert(1, ("missing.mp4", "v0/mask.png", "bad"))
    jobs, out = write_csv(tmp_path / "jobs.csv", rows), tmp_path / "R"
    code, stdout, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert_one_line_error(code, stderr, "job bad", "missing.mp4", "no such video")
    assert code == 1 and "frames/s" in stderr
    report = json.loads((out / "jobs.json").read_text())
    assert [(j["name"], j["status"]) for j in report["jobs"]] == [
        ("job0", "done"),
        ("bad", "failed"),
        ("job1", "done"),
        ("job2", "done"),
    ]
    assert report["counts"]["failed"] == 1 and not report["complete"]
    assert "missing.mp4" in report["jobs"][1]["error"] and "bad" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["job0", "job1", "job2", "jobs.json"]
    for k, frames in enumerate([5, 4, 3]):
        summary = json.loads((out / f"job{k}" / "summary.json").read_text())
        assert summary["complete"] is True and summary["frames"] == frames
        assert len(list((out / f"job{k}" / "masks").glob("*.png"))) == frames

    # the bad job is fixed, and job1 is as a killed run leaves it: only those two run again
    (tmp_path / "missing.mp4").write_bytes((tmp_path / "v2" / "clip.mp4").read_bytes())
    shutil.rmtree(out / "job1")
    (out / "job1" / ".hvc-run.partial" / "masks").mkdir(parents=True)
    kept = (out / "job2" / "summary.json").stat().st_mtime_ns
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert code == 0, stderr
    statuses = [j["status"] for j in json.loads((out / "jobs.json").read_text())["jobs"]]
    assert statuses == ["skipped", "done", "done", "skipped"]
    assert (out / "job2" / "summary.json").stat().st_mtime_ns == kept


def test_a_bad_mask_and_a_foreign_folder_fail_their_jobs_only(tmp_path):
    rows = clips(tmp_path, [3, 3])
    write_palette_png(tmp_path / "empty.png", np.zeros((64, 96), np.uint8))
    rows.append(("v0/clip.mp4", "empty.png", "nomask"))
    (tmp_path / "R" / "job1").mkdir(parents=True)
    (tmp_path / "R" / "job1" / "notes.txt").write_text("mine")
    jobs = write_csv(tmp_path / "jobs.csv", rows)
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", tmp_path / "R", *FAST])
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, stderr
    assert any("empty.png" in e and "holds no object" in e for e in errors)
    assert any("notes.txt" in e and "--overwrite" in e for e in errors)
    assert (tmp_path / "R" / "job0" / "summary.json").is_file()
    assert sorted(p.name for p in (tmp_path / "R" / "job1").iterdir()) == ["notes.txt"]


def test_jobs_takes_no_video_and_needs_out(clip, tmp_path):
    video, mask = clip
    jobs = write_csv(tmp_path / "jobs.csv", [(video.name, mask.name, "a")])
    code, _, stderr = run_cli(run_app, [video, mask, "--jobs", jobs, "--out", tmp_path / "R"])
    assert_one_line_error(code, stderr, "--jobs takes no VIDEO")
    code, _, stderr = run_cli(run_app, ["--jobs", jobs])
    assert_one_line_error(code, stderr, "--jobs needs --out")


def interrupt_job_list(jobs: Path, out: Path, ready: Callable[[], bool], *extra: str) -> str:
    """Run the list in a process of its own, SIGINT it once `ready()`; its stderr (exit 130).
    Skips the test when every job finished first."""
    command = [sys.executable, "-c", "from hvc_runtime.cli import run_app; run_app()"]
    command += ["--jobs", str(jobs), "--out", str(out), *FAST, *extra]
    process = subprocess.Popen(command, env=env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("every job finished before the interrupt came")
    assert process.returncode == 130, stderr
    return stderr


def test_interrupt_keeps_finished_jobs_and_a_rerun_resumes(tmp_path):
    # run longest first, job0, job2, job1: the interrupt comes while job2 is segmented
    jobs = write_csv(tmp_path / "jobs.csv", clips(tmp_path, [10, 3, 8]))
    out = tmp_path / "R"
    stderr = interrupt_job_list(jobs, out, (out / "job0" / "summary.json").exists)
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "run again to resume" in lines[0], stderr
    report = json.loads((out / "jobs.json").read_text())
    assert report["interrupted"] and report["jobs"][0]["status"] == "done"
    assert {j["status"] for j in report["jobs"][1:]} <= {"done", "interrupted", "not run"}
    if report["jobs"][2]["status"] == "interrupted":  # nothing of it is kept
        assert "job job2 " in lines[0] and not (out / "job2").exists()
    assert not list(out.rglob(".hvc-run.partial"))
    kept = (out / "job0" / "summary.json").stat().st_mtime_ns
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert code == 0, stderr
    report = json.loads((out / "jobs.json").read_text())
    assert report["complete"] and report["jobs"][0]["status"] == "skipped"
    assert (out / "job0" / "summary.json").stat().st_mtime_ns == kept


# --- torchrun and hvc-eval --------------------------------------------------------------------


def test_torchrun_two_processes_share_the_jobs_and_hvc_eval_scores_them(tmp_path):
    """Two processes (gloo on CPU), four jobs of which one is bad: the others complete, rank
    0 alone prints the table, the exit code says a job failed; hvc-eval scores the folders."""
    names = ["a", "b", "c"]
    davis = tmp_path / "davis"
    make_dataset_with_frames(davis, names)
    rows = [
        (f"davis/JPEGImages/480p/{n}", f"davis/Annotations/480p/{n}/00000.png", n) for n in names
    ]
    rows.append(("davis/JPEGImages/480p/nosuch", "davis/Annotations/480p/a/00000.png", "bad"))
    jobs, out = write_csv(tmp_path / "jobs.csv", rows), tmp_path / "R"
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    done = subprocess.run(
        [*launch, "--no-python", "--", "hvc-run", "--jobs", str(jobs), "--out", str(out), *FAST],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode != 0, done.stderr[-2000:]
    assert done.stdout.count("┃ job ") == 1, done.stdout  # one table, from rank 0
    assert sum(line.startswith("error: job bad") for line in done.stderr.splitlines()) == 1
    assert done.stderr.count("jobs 3/3") == 1 and "18/18" in done.stderr  # one bar, all ranks
    report = json.loads((out / "jobs.json").read_text())
    assert report["processes"] == 2
    status = {j["name"]: (j["status"], j["rank"]) for j in report["jobs"]}
    assert status["bad"] == ("failed", None)
    assert {status[n][0] for n in names} == {"done"} and {status[n][1] for n in names} == {0, 1}

    code, stdout, stderr = run_cli(eval_app, [out, "--davis", davis, "--sequences", "a,b,c"])
    assert code == 0, stderr
    assert "global (objects)" in stdout
    dataset = DavisDataset(davis)
    flat = tmp_path / "flat"
    for name in names:  # the same masks in the flat layout score the same
        (flat / name).mkdir(parents=True)
        for png in (out / name / "masks").glob("*.png"):
            (flat / name / png.name).write_bytes(png.read_bytes())
    assert evaluate(dataset, flat, names).jf_mean == evaluate(dataset, out, names).jf_mean


def test_hvc_eval_error_names_the_layouts(tmp_path):
    make_dataset(tmp_path / "davis", ["a"])
    (tmp_path / "R" / "a").mkdir(parents=True)
    code, _, stderr = run_cli(eval_app, [tmp_path / "R", "--davis", tmp_path / "davis"])
    assert_one_line_error(code, stderr, "no result masks for sequence a", "<sequence>/masks/")
    (tmp_path / "R" / "a" / "masks").mkdir()
    code, _, stderr = run_cli(eval_app, [tmp_path / "R", "--davis", tmp_path / "davis"])
    assert_one_line_error(code, stderr, "masks/00001.png", "hvc-run")


# --- mask folders -----------------------------------------------------------------------------


def test_mask_folder_adds_objects_where_they_appear(tmp_path):
    """An object entering at frame 3 gets its mask there (as in the YouTube-VOS protocol)."""
    background = smooth_texture(96, 160, seed=4)
    entered = background.copy()
    entered[48:88, 90:150] = smooth_texture(40, 60, seed=9, cells=4)
    video, folder = tmp_path / "frames", tmp_path / "masks"
    video.mkdir()
    folder.mkdir()
    for t in range(6):
        Image.fromarray(background if t < 3 else entered).save(video / f"{t:05d}.png")
    first, late = np.zeros((96, 160), np.uint8), np.zeros((96, 160), np.uint8)
    first[8:40, 8:56] = 1
    late[48:88, 90:150] = 2
    write_palette_png(folder / "00000.png", first)
    write_palette_png(folder / "00003.png", late)
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        run_app, [video, folder, "--out", out, "--device", "cpu", "--no-overlay"]
    )
    assert code == 0, stderr
    ids = [read_mask(out / "masks" / f"{t:05d}.png") for t in range(6)]
    assert all(2 not in i and (i == 1).sum() > 0.8 * (first == 1).sum() for i in ids[:3])
    assert all((i == 2).sum() > 0.7 * (late == 2).sum() for i in ids[3:])

    (folder / "00000.png").rename(folder / "00001.png")
    code, _, stderr = run_cli(run_app, [video, folder, "--out", tmp_path / "o2", *FAST])
    assert_one_line_error(code, stderr, "masks", "no mask for the first frame", "'00000'")
    (folder / "00001.png").rename(folder / "00000.png")
    write_palette_png(folder / "frame9.png", first)
    code, _, stderr = run_cli(run_app, [video, folder, "--out", tmp_path / "o2", *FAST])
    assert_one_line_error(code, stderr, "frame9.png", "names no frame")


# --- read-ahead ---------------------------------------------------------------------------------


class CountingSource(FrameSource):
    """Frames that count how many were decoded."""

    def __init__(self, source: FrameSource) -> None:
        self.source, self.decoded = source, 0
        self.path, self.fps = source.path, source.fps
        self.height, self.width = source.height, source.width

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        for frame in self.source:
            self.decoded += 1
            yield frame


def test_preload_decodes_ahead_with_bounded_memory(tmp_path):
    from hvc_runtime.io.frames import open_frames

    video, _ = panning_clip(tmp_path, frames=30)
    source = CountingSource(open_frames(video))
    ahead = preload(source, None, depth=3)
    deadline = time.monotonic() + 30
    while source.decoded < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert 3 <= source.decoded <= 3 + 4 + 2  # its own queue, prefetch's, one in hand each
    assert [f.index for f in ahead] == list(range(30))
    stopped = preload(CountingSource(open_frames(video)), None, depth=2)
    stopped.close()  # never iterated: the reader threads still end
    assert not [t for t in threading.enumerate() if t.name == "hvc-decoder"]


def test_a_rerun_with_other_settings_redoes_complete_jobs(tmp_path):
    jobs, out = write_csv(tmp_path / "jobs.csv", clips(tmp_path, [3, 3])), tmp_path / "R"
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert code == 0, stderr
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST, "--topk", "5"])
    assert code == 0, stderr
    statuses = [j["status"] for j in json.loads((out / "jobs.json").read_text())["jobs"]]
    assert statuses == ["done", "done"]  # made with top-15 before: not what this run makes
    assert json.loads((out / "job0" / "summary.json").read_text())["propagation"]["topk"] == 5
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST, "--topk", "5"])
    statuses = [j["status"] for j in json.loads((out / "jobs.json").read_text())["jobs"]]
    assert code == 0 and statuses == ["skipped", "skipped"]


def test_a_second_job_list_into_one_folder_is_refused(tmp_path):
    from hvc_runtime.runs.batch import claim_output

    jobs, out = write_csv(tmp_path / "jobs.csv", clips(tmp_path, [3])), tmp_path / "R"
    held = claim_output(out)  # as a job list running into R holds it
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert_one_line_error(code, stderr, f"{out}: another hvc-run --jobs (process {os.getpid()})")
    held.release()
    assert list(out.iterdir()) == []
