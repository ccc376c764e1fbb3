"""What a job list counts as done, from the command line: one test of "complete" for the skip,
the table, jobs.json and the closing line (settings included), results redone when their
inputs or weights changed in place, a `jobs.json` of the user's kept, and totals that only
count what runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from hvc_runtime.cli import run_app
from hvc_runtime.encoder.checkpoints import CheckpointHeader, random_encoder, save_encoder
from hvc_runtime.io.masks import read_mask, write_palette_png
from tests.conftest import smooth_texture, write_video
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_jobs import FAST, clips, interrupt_job_list, write_csv


def statuses(out: Path) -> list[str]:
    return [j["status"] for j in json.loads((out / "jobs.json").read_text())["jobs"]]


def made_again(stderr: str) -> dict[str, str]:
    """The `job NAME: made again: WHY` lines, by job."""
    found = (re.fullmatch(r"job (\S+): made again: (.*)", line) for line in stderr.splitlines())
    return {match[1]: match[2] for match in found if match}


def test_an_interrupted_redo_claims_only_results_made_with_its_settings(tmp_path):
    """The list runs complete with top-15; a rerun with top-5 is interrupted after its first
    job: the results still on disk (made with top-15, or being redone) are not complete for
    it, in jobs.json and in the closing line alike."""
    jobs, out = write_csv(tmp_path / "jobs.csv", clips(tmp_path, [3, 8, 8])), tmp_path / "R"
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert code == 0, stderr

    def topk(name: str) -> int:
        return json.loads((out / name / "summary.json").read_text())["propagation"]["topk"]

    def one_redone() -> bool:
        return any(topk(n) == 5 for n in ("job1", "job2"))

    stderr = interrupt_job_list(jobs, out, one_redone, "--topk", "5")
    redone = {name for name in ("job0", "job1", "job2") if topk(name) == 5}
    report = json.loads((out / "jobs.json").read_text())
    claimed = {j["name"] for j in report["jobs"] if j["status"] in ("done", "skipped")}
    assert claimed == redone and len(redone) < 3 and not report["complete"]
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert f"{len(redone)} of 3 jobs complete" in line


def test_results_whose_inputs_or_weights_changed_are_made_again(tmp_path):
    rows = clips(tmp_path, [2, 2, 2, 2])
    folder = tmp_path / "v1" / "masks"  # job1 starts from a folder of masks
    folder.mkdir()
    (tmp_path / "v1" / "mask.png").rename(folder / "00000.png")
    rows[1] = ("v1/clip.mp4", "v1/masks", "job1")
    jobs, out = write_csv(tmp_path / "jobs.csv", rows), tmp_path / "R"
    checkpoint = tmp_path / "encoder.safetensors"
    save_encoder(random_encoder(seed=1).backbone, checkpoint, CheckpointHeader())
    args = ["--jobs", jobs, "--out", out, "--checkpoint", checkpoint, *FAST]
    code, _, stderr = run_cli(run_app, args)
    assert code == 0, stderr

    ids = read_mask(tmp_path / "v0" / "mask.png")
    write_palette_png(tmp_path / "v0" / "mask.png", np.roll(ids, 3, axis=1))  # edited in place
    write_palette_png(folder / "00001.png", ids)  # a mask added to job1's folder
    video = tmp_path / "v2" / "clip.mp4"  # job2's video exported again under its name
    write_video(video, [smooth_texture(64, 96, seed=s) for s in range(2)])
    (out / "job3" / "masks" / "00001.png").unlink()  # a result that lost a mask
    code, _, stderr = run_cli(run_app, args)
    assert code == 0, stderr
    assert statuses(out) == ["done"] * 4
    why = made_again(stderr)
    assert why["job0"].startswith(f"the mask {tmp_path / 'v0' / 'mask.png'} changed")
    assert why["job1"].startswith(f"the masks in {folder} changed")
    assert why["job2"].startswith(f"the video {video} changed since it was made")
    assert why["job3"] == "its masks/ holds 1 masks, not the 2 it made"
    code, _, stderr = run_cli(run_app, args)
    assert code == 0 and statuses(out) == ["skipped"] * 4 and not made_again(stderr)

    trunk = random_encoder(seed=1).backbone
    with torch.no_grad():
        trunk.conv1.weight.mul_(1.5)  # retrained into the same file
    save_encoder(trunk, checkpoint, CheckpointHeader())
    code, _, stderr = run_cli(run_app, args)
    assert code == 0 and statuses(out) == ["done"] * 4
    assert all(
        "made with other settings" in w and "weight_files" in w for w in made_again(stderr).values()
    )


def test_a_jobs_json_the_list_did_not_write_is_not_replaced(tmp_path):
    jobs, out = write_csv(tmp_path / "jobs.csv", clips(tmp_path, [2])), tmp_path / "R"
    out.mkdir()
    (out / "jobs.json").write_text('{"mine": "the job sheet I keep here"}\n')
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert_one_line_error(
        code, stderr, f"{out / 'jobs.json'}: is not the table of an earlier job list", "--overwrite"
    )
    assert "encoder:" not in stderr  # refused before the model loads
    assert sorted(p.name for p in out.iterdir()) == ["jobs.json"]
    assert "the job sheet" in (out / "jobs.json").read_text()
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST, "--overwrite"])
    assert code == 0 and statuses(out) == ["done"], stderr
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])  # its own table
    assert code == 0 and statuses(out) == ["skipped"], stderr

    (out / "jobs.json").unlink()
    (out / "jobs.json").mkdir()
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST, "--overwrite"])
    assert_one_line_error(code, stderr, "jobs.json: is a folder")


def test_jobs_refused_at_start_or_ending_short_leave_true_totals(tmp_path):
    """A job whose mask does not fit is refused when the list is planned (not counted to run,
    its frames in no total); a video that stops decoding half-way fails after its frames: the
    bar's frame total ends at the frames segmented, not at the frames planned."""
    rows = clips(tmp_path, [3])
    write_palette_png(tmp_path / "small.png", np.ones((32, 32), np.uint8))
    rows.append(("v0/clip.mp4", "small.png", "misfit"))
    rng = np.random.default_rng(0)
    cut = tmp_path / "cut.avi"
    write_video(
        cut, [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(12)], fourcc="MJPG"
    )
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    rows.append(("cut.avi", "v0/mask.png", "cut"))
    jobs, out = write_csv(tmp_path / "jobs.csv", rows), tmp_path / "R"
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", out, *FAST])
    assert code == 1
    text = " ".join(stderr.split())
    assert "3 jobs in" in text and "2 to run (15 frames)" in text and "1 refused" in text
    (done, total), *_ = reversed(re.findall(r"frames (\d+)/(\d+)", stderr))
    assert done == total and 3 < int(total) < 15, stderr
    assert sum(line.startswith("error: job") for line in stderr.splitlines()) == 2
    assert statuses(out) == ["done", "failed", "failed"]
    report = json.loads((out / "jobs.json").read_text())
    assert (
        "mask is 32x32" in report["jobs"][1]["error"]
        and "of the 12 frames" in report["jobs"][2]["error"]
    )
