"""Two sets of DAVIS results compared mask by mask: how often a faster setting changes a pixel.

    python -m benchmarks.mask_agreement BASELINE CANDIDATE --davis DAVIS_ROOT --single-object \\
        --out benchmarks/runs/NAME

BASELINE and CANDIDATE are `hvc-eval --run` result folders of the same videos made with two
settings (e.g. fp32 and `--precision bf16 --no-fp32-scores`). Per video: the share of pixels
whose label is the same in every frame, and the J&F of each (unrounded, as hvc-eval scores
them). Writes agreement.json and agreement.md into --out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from benchmarks.environment import describe
from benchmarks.report import write_json
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate_sequence, sequence_results
from hvc_runtime.io.masks import read_mask
from hvc_runtime.utils.errors import HvcError

app = typer.Typer(add_completion=False)


def pixel_agreement(baseline: Path, candidate: Path) -> tuple[float, int]:
    """The share (%) of pixels labelled alike over every mask of `baseline`, and the frame count."""
    same = total = 0
    files = sorted(baseline.glob("*.png"))
    for file in files:
        other = candidate / file.name
        if not other.is_file():
            raise HvcError(f"{other}: missing (the baseline has {file})")
        a, b = read_mask(file), read_mask(other)
        if a.shape != b.shape:
            raise HvcError(f"{other}: size {b.shape} differs from {file} ({a.shape})")
        same += int(np.count_nonzero(a == b))
        total += a.size
    if not files:
        raise HvcError(f"{baseline}: no masks")
    return 100 * same / total, len(files)


def jf(dataset: DavisDataset, results: Path, sequence: str, single_object: bool) -> float:
    """J&F (0-100) of one video's results, unrounded: the mean over its objects."""
    objects = evaluate_sequence(
        dataset.annotation_files(sequence), results, sequence, single_object
    )
    return float(np.mean([100 * (o.j.mean() + o.f.mean()) / 2 for o in objects]))


def agreement_rows(
    baseline: Path, candidate: Path, dataset: DavisDataset, sequences: list[str], single: bool
) -> list[dict]:
    rows = []
    for sequence in sequences:
        ours, theirs = sequence_results(baseline, sequence), sequence_results(candidate, sequence)
        agree, frames = pixel_agreement(ours, theirs)
        jf_base, jf_candidate = (jf(dataset, r, sequence, single) for r in (ours, theirs))
        rows.append(
            {
                "video": sequence,
                "frames": frames,
                "pixel_agreement_pct": agree,
                "jf_baseline": jf_base,
                "jf_candidate": jf_candidate,
                "jf_difference": jf_candidate - jf_base,
            }
        )
    return rows


def _percent(share: float) -> str:
    """Four decimals, rounded down: a single differing pixel never reads as 100%."""
    return f"{math.floor(share * 1e4) / 1e4:.4f}"


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"Baseline `{results['baseline_settings']}` against candidate "
        f"`{results['candidate_settings']}`, {env['device_name']} ({env['cpu_threads']} threads), "
        f"git {env['git_revision']}.",
        "",
        "| video | frames | pixel agreement % | J&F baseline | J&F candidate | J&F difference |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["videos"]:
        lines.append(
            f"| {row['video']} | {row['frames']} | {_percent(row['pixel_agreement_pct'])} | "
            f"{row['jf_baseline']:.2f} | {row['jf_candidate']:.2f} | {row['jf_difference']:+.4f} |"
        )
    mean = results["mean"]
    lines.append(
        f"| **mean** | {mean['frames']} | {_percent(mean['pixel_agreement_pct'])} | "
        f"{mean['jf_baseline']:.2f} | {mean['jf_candidate']:.2f} | {mean['jf_difference']:+.4f} |"
    )
    return "\n".join(lines) + "\n"


@app.command()
def main(
    baseline: Annotated[Path, typer.Argument(help="hvc-eval --run results of the baseline.")],
    candidate: Annotated[Path, typer.Argument(help="The same videos with the candidate.")],
    davis: Annotated[Path, typer.Option(help="DAVIS-format root (ground truth).")],
    out: Annotated[Path, typer.Option(help="Folder for agreement.json and agreement.md.")],
    split: Annotated[str, typer.Option(help="ImageSets list of the videos.")] = "val",
    single_object: Annotated[bool, typer.Option(help="DAVIS-2016: all ids as one.")] = False,
    baseline_settings: Annotated[str, typer.Option(help="How the baseline was made.")] = "fp32",
    candidate_settings: Annotated[str, typer.Option(help="How the candidate was made.")] = "",
) -> None:
    try:
        dataset = DavisDataset(davis)
        sequences = [s for s in dataset.sequences(split) if (baseline / s).is_dir()]
        if not sequences:
            raise HvcError(f"{baseline}: no results for the {split} videos of {davis}")
        rows = agreement_rows(baseline, candidate, dataset, sequences, single_object)
    except HvcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    frames = sum(r["frames"] for r in rows)
    mean = {
        "frames": frames,
        # pixels weigh alike across videos of one size: a frame-weighted mean
        "pixel_agreement_pct": sum(r["pixel_agreement_pct"] * r["frames"] for r in rows) / frames,
        **{key: float(np.mean([r[key] for r in rows])) for key in ("jf_baseline", "jf_candidate")},
    }
    mean["jf_difference"] = mean["jf_candidate"] - mean["jf_baseline"]
    results = {
        "environment": describe(torch.device("cpu")),
        "baseline_settings": baseline_settings,
        "candidate_settings": candidate_settings,
        "videos": rows,
        "mean": mean,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / "agreement.json")
    (out / "agreement.md").write_text(markdown(results))
    typer.echo(markdown(results))
    typer.echo(f"wrote {out / 'agreement.json'} and {out / 'agreement.md'}")


if __name__ == "__main__":
    app()
