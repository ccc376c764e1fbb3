"""Results as JSON, a Markdown table, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return []
    lines = ["| " + " | ".join(title for title, _ in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        cells = []
        for _, key in columns:
            value = row.get(key)
            cells.append(
                "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"Measured on **{env.get('device_name', env['device'])}** ({env['device']}, "
        f"{env['cpu_threads']} CPU threads), torch {env['versions'].get('torch')}, "
        f"git {env['git_revision'][:10]}. Median of {results['settings']['runs']} runs after "
        f"{results['settings']['warmup']} warm-up; speed-ups are against the baseline of the same run.",
        "",
    ]
    if results.get("encoder"):
        lines += ["**Encoder** (ms per call)", ""]
        lines += _table(
            results["encoder"],
            [("backend", "backend"), ("size", "size"), ("batch", "batch"), ("median ms", "median_ms"),
             ("p90 ms", "p90_ms"), ("images/s", "images_per_s"), ("speed-up", "speedup")],
        )  # fmt: skip
    if results.get("propagation"):
        lines += ["**Propagation** (ms per frame, full context)", ""]
        lines += _table(
            results["propagation"],
            [("implementation", "implementation"), ("size", "size"), ("dim", "feature_dim"),
             ("context", "context"), ("median ms", "median_ms"), ("p90 ms", "p90_ms"),
             ("frames/s", "frames_per_s"), ("speed-up vs reference", "speedup")],
        )  # fmt: skip
    if results.get("end_to_end"):
        lines += ["**End to end** (frames/s)", ""]
        lines += _table(
            results["end_to_end"],
            [("video", "video"), ("mode", "mode"), ("size", "size"), ("frames", "frames"),
             ("with decode + PNG writing", "fps_end_to_end"), ("compute only", "fps_compute_only")],
        )  # fmt: skip
    if results.get("memory"):
        lines += ["**Memory vs video length**", ""]
        lines += _table(
            results["memory"],
            [("implementation", "implementation"), ("frames", "frames"), ("grid", "grid"),
             ("MB", "memory_mb")],
        )  # fmt: skip
    if results.get("agreement"):
        clip = results["settings"]["agreement"]
        lines += [
            f"**Fast vs reference masks** (DAVIS-2016 {clip['sequence']}, first {clip['frames']} "
            "frames; J&F without the first and last frame)",
            "",
        ]
        lines += _table(
            results["agreement"],
            [("backend", "backend"), ("precision", "precision"),
             ("pixel agreement %", "pixel_agreement_pct"), ("J&F reference", "jf_reference"),
             ("J&F fast", "jf_fast"), ("J&F difference", "jf_difference")],
        )  # fmt: skip
    if results.get("skipped"):
        lines += [
            "Skipped: " + "; ".join(f"{s['backend']} ({s['reason']})" for s in results["skipped"]),
            "",
        ]
    return "\n".join(lines)


def plots(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    encoder = [r for r in results.get("encoder", []) if r["batch"] == 1]
    if encoder:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for backend in dict.fromkeys(r["backend"] for r in encoder):
            rows = [r for r in encoder if r["backend"] == backend]
            left.plot(
                [r["size"] for r in rows], [r["median_ms"] for r in rows], marker="o", label=backend
            )
            right.bar(backend, rows[0]["speedup"] or 0)
        left.set(title="Encoder latency, batch 1", ylabel="ms", yscale="log")
        left.legend(fontsize=7)
        right.set(title=f"Speed-up over eager fp32 ({encoder[0]['size']})", ylabel="×")
        right.tick_params(axis="x", rotation=45, labelsize=7)
        fig.tight_layout()
        written.append(_save(fig, folder / "encoder.png"))
    propagation = results.get("propagation", [])
    if propagation:
        fig, axis = plt.subplots(figsize=(6, 4))
        labels = [
            f"{r['implementation']} {r['size']} {r['feature_dim']}-d {r['context']}"
            for r in propagation
        ]
        axis.barh(labels, [r["median_ms"] for r in propagation])
        axis.set(title="Propagation per frame", xlabel="ms", xscale="log")
        fig.tight_layout()
        written.append(_save(fig, folder / "propagation.png"))
    memory = results.get("memory", [])
    if memory:
        fig, axis = plt.subplots(figsize=(5, 4))
        axis.plot([r["frames"] for r in memory], [r["memory_mb"] for r in memory], marker="o")
        axis.set(
            title="Memory vs video length",
            xlabel="frames",
            ylabel="MB",
            xscale="log",
            ylim=(0, None),
        )
        fig.tight_layout()
        written.append(_save(fig, folder / "memory.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
