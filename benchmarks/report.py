"""Results as JSON, a Markdown table, and PNG plots; and the parts of a run merged.

python -m benchmarks.report OUT PART.json... writes OUT/latency.json, latency.md and plots
from part files (`benchmarks/gpu/benchmark.sh` runs each part in its own process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PARTS = ("encoder", "propagation", "end_to_end", "memory", "agreement")


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


def _on_date(env: dict) -> str:
    """ ", on YYYY-MM-DD" where the run recorded its date (runs before it did not)."""
    return f", on {env['measured_at'][:10]}" if "measured_at" in env else ""


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"Measured on **{env.get('device_name', env['device'])}** ({env['device']}, "
        f"{env['cpu_threads']} CPU threads), torch {env['versions'].get('torch')}, "
        f"git {env['git_revision'][:10]}{_on_date(env)}. Median of {results['settings']['runs']} runs after "
        f"{results['settings']['warmup']} warm-up; speed-ups are against the baseline of the same run.",
        "",
    ]
    if results.get("encoder"):
        lines += ["**Encoder** (ms per call)", ""]
        lines += _table(
            results["encoder"],
            [("backend", "backend"), ("size", "size"), ("batch", "batch"), ("median ms", "median_ms"),
             ("p90 ms", "p90_ms"), ("images/s", "images_per_s"), ("speed-up", "speedup"),
             ("first call ms", "first_call_ms")],
        )  # fmt: skip
    if results.get("propagation"):
        lines += ["**Propagation** (ms per frame, full context)", ""]
        lines += _table(
            results["propagation"],
            [("implementation", "implementation"), ("features", "features"),
             ("threads", "threads"), ("size", "size"),
             ("dim", "feature_dim"),
             ("context", "context"), ("median ms", "median_ms"), ("p90 ms", "p90_ms"),
             ("frames/s", "frames_per_s"), ("speed-up vs reference", "speedup")],
        )  # fmt: skip
    if results.get("end_to_end"):
        lines += ["**End to end** (frames/s)", ""]
        lines += _table(
            results["end_to_end"],
            [("video", "video"), ("mode", "mode"), ("precision", "precision"),
             ("encoder", "encoder"), ("kernel", "kernel"), ("size", "size"), ("frames", "frames"),
             ("with decode + PNG writing", "fps_end_to_end"), ("compute only", "fps_compute_only"),
             ("device only", "fps_device_only"),
             ("context full: with decode + PNG", "steady_fps_end_to_end"),
             ("context full: compute only", "steady_fps_compute_only")],
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
    summary = summary_rows(results)
    if summary:
        machine = "a 2-core CPU" if results["environment"]["device"] == "cpu" else "an H100"
        lines += [f"**Summary** (targets for {machine})", ""]
        lines += _table(summary, [("figure", "figure"), ("measured", "measured"),
                                  ("target", "target"), ("met", "met")])  # fmt: skip
    return "\n".join(lines)


def _fastest(rows: list[dict], **match) -> dict | None:
    """The non-reference propagation row with the best median among rows matching `match`,
    of the settings that give the reference's masks (not those ranked in half precision)."""
    chosen = [
        r for r in rows
        if r["implementation"] != "reference" and all(r.get(k) == v for k, v in match.items())
        and not r.get("features", "fp32").endswith("-scores")
    ]  # fmt: skip
    return min(chosen, key=lambda r: r["median_ms"], default=None)


def summary_rows(results: dict) -> list[dict]:
    """The headline figures of a run next to the GPU targets they are measured against."""
    rows: list[dict] = []

    def add(figure: str, value: float | None, target: str, met: bool | None) -> None:
        if value is not None:
            verdict = "–" if met is None else "yes" if met else "no"
            rows.append({"figure": figure, "measured": round(value, 2), "target": target,
                         "met": verdict})  # fmt: skip

    cpu = results["environment"]["device"] == "cpu"
    # the targets: on a CUDA GPU (an H100), and on a 2-core CPU
    ms_256, speedup_256, ms_1280, speedup_1280 = (500, 35, 2000, None) if cpu else (3, 25, None, 10)
    propagation = results.get("propagation", [])
    best = _fastest(propagation, size="480p", feature_dim=256, context="1+50")
    if best:
        label = f"{best['implementation']} {best.get('features', 'fp32')}"
        add(f"propagation 480p 256-d 1+50, ms ({label})", best["median_ms"],
            f"≤ {ms_256}", best["median_ms"] <= ms_256)  # fmt: skip
        add("  speed-up vs reference", best["speedup"], f"≥ {speedup_256}",
            (best["speedup"] or 0) >= speedup_256)  # fmt: skip
    fused = _fastest(propagation, size="480p", feature_dim=1280, context="1+50")
    if fused and ms_1280:
        add("propagation 480p 1280-d 1+50, ms", fused["median_ms"], f"≤ {ms_1280}",
            fused["median_ms"] <= ms_1280)  # fmt: skip
    if fused and speedup_1280:
        add("propagation 480p 1280-d 1+50, speed-up", fused["speedup"], f"≥ {speedup_1280}",
            (fused["speedup"] or 0) >= speedup_1280)  # fmt: skip
    fast = [
        r for r in results.get("end_to_end", [])
        if r["mode"] == "fast" and not r.get("precision", "fp32").endswith("-scores")
    ]  # fmt: skip
    if fast and cpu:
        steady = max(r.get("steady_fps_end_to_end") or 0 for r in fast)
        add("end to end, decoding and PNGs, context full, frames/s", steady or None, "≥ 1.5",
            steady >= 1.5)  # fmt: skip
        whole = max(r["fps_end_to_end"] for r in fast)
        add("  over the whole video, frames/s", whole, "(reported)", None)
    elif fast:
        device_fps = max(r.get("fps_device_only") or 0 for r in fast)
        add("encoder + propagation, device only, frames/s", device_fps, "≥ 300", device_fps >= 300)
        full = max(r["fps_end_to_end"] for r in fast)
        add("end to end with decoding and PNGs, frames/s", full, "≥ 150", full >= 150)
    memory = results.get("memory", [])
    if memory:
        peak = max(r["memory_mb"] for r in memory)
        growth = memory[-1]["memory_mb"] - memory[0]["memory_mb"]
        if cpu:  # a CPU has no memory target: it must only stay flat
            add("peak memory, MB", peak, "(reported)", None)
        else:
            add("peak memory, MB", peak, "≤ 1024", peak <= 1024)
        add(f"  growth {memory[0]['frames']} → {memory[-1]['frames']} frames, MB", growth,
            "≈ 0", abs(growth) < 16)  # fmt: skip
    for precision in dict.fromkeys(r["precision"] for r in results.get("agreement", [])):
        worst = min(r["pixel_agreement_pct"] for r in results["agreement"]
                    if r["precision"] == precision)  # fmt: skip
        need = 99.99 if precision == "fp32" else 99.5
        add(f"fast vs fp32 reference, {precision}, worst pixel agreement %", worst, f"≥ {need}",
            worst >= need)  # fmt: skip
    return rows


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


def merge(parts: list[dict]) -> dict:
    """One result from the parts of a run: the first part's environment, every part's rows,
    their skips once each, the settings of all (later parts win on a clash)."""
    if not parts:
        raise ValueError("no results to merge")
    merged: dict = {"environment": parts[0]["environment"], "settings": {}, "skipped": []}
    for part in parts:
        merged["settings"].update(part.get("settings", {}))
        merged["skipped"] += [s for s in part.get("skipped", []) if s not in merged["skipped"]]
        for name in PARTS:
            if part.get(name):
                merged[name] = merged.get(name, []) + part[name]
    return merged


def write_all(results: dict, folder: Path) -> list[Path]:
    """latency.json, latency.md and the plots of `results` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(results, folder / "latency.json")
    (folder / "latency.md").write_text(markdown(results) + "\n")
    return [folder / "latency.json", folder / "latency.md", *plots(results, folder)]


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    found = [Path(p) for p in sys.argv[2:] if Path(p).is_file()]
    if not found:
        raise SystemExit("no part results to merge (every part failed before writing one)")
    write_all(merge([json.loads(p.read_text()) for p in found]), Path(sys.argv[1]))
