"""The benchmark suite: `python -m benchmarks.latency --help`.

Writes `latency.json`, `latency.md` and PNG plots into the output folder; every speed claim in
the documentation comes from such a file (`python -m benchmarks.publish`). `latency.json` is
rewritten as each part finishes, so a run cut off at a time limit keeps the parts it completed.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmarks import cases
from benchmarks.encoders import ALL, build_variants, export_and_load
from benchmarks.environment import describe
from benchmarks.report import markdown, write_all, write_json
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.io.masks import read_mask
from hvc_runtime.utils.devices import resolve_device

console = Console(stderr=True)
app = typer.Typer(add_completion=False, help=__doc__)
DAVIS_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"


@contextmanager
def _part(description: str):
    """A spinner on terminals, and a start/finish line in logs."""
    began = time.perf_counter()
    console.print(f"{description} ...", markup=False, highlight=False)
    with console.status(description):
        yield
    console.print(
        f"{description}: {time.perf_counter() - began:.0f} s", markup=False, highlight=False
    )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def main(
    encoder: Annotated[
        bool, typer.Option("--encoder", help="Encoder latency per backend.")
    ] = False,
    propagation: Annotated[
        bool, typer.Option("--propagation", help="Propagation per frame.")
    ] = False,
    e2e: Annotated[
        bool, typer.Option("--e2e", help="End to end on DAVIS and a generated video.")
    ] = False,
    memory: Annotated[bool, typer.Option("--memory", help="Memory vs video length.")] = False,
    agreement: Annotated[
        bool,
        typer.Option("--agreement", help="Fast vs reference masks on DAVIS, per backend."),
    ] = False,
    backends: Annotated[str, typer.Option(help=f"Comma list from {', '.join(ALL)}.")] = ",".join(
        ALL
    ),
    sizes: Annotated[
        str, typer.Option(help="480p, 720p, 1080p or HEIGHTxWIDTH.")
    ] = "480p,720p,1080p",
    batches: Annotated[str, typer.Option(help="Encoder batch sizes.")] = "1,8",
    dims: Annotated[
        str, typer.Option(help="Feature dims for propagation (256, 1280).")
    ] = "256,1280",
    contexts: Annotated[str, typer.Option(help="Short-term contexts.")] = "50,20,10",
    feature_dtypes: Annotated[
        str,
        typer.Option(
            help="Feature dtypes for propagation (the reference runs fp32 only): fp32, fp16, "
            "bf16 (ranked by fp32 scores), fp16-scores, bf16-scores (ranked in that precision)."
        ),
    ] = "fp32",
    threads: Annotated[
        str, typer.Option(help="CPU threads for the propagation rows, comma list (default: as is).")
    ] = "",
    implementations: Annotated[
        str,
        typer.Option(
            help="Propagators to time: reference (the baseline), fast (PyTorch), fast-triton."
        ),
    ] = "reference,fast,fast-triton",
    e2e_modes: Annotated[str, typer.Option(help="Propagation modes end to end.")] = "fast",
    e2e_precision: Annotated[
        str, typer.Option(help="End-to-end precisions, comma list (as --feature-dtypes).")
    ] = "fp32",
    e2e_generated: Annotated[bool, typer.Option(help="Also a generated video end to end.")] = True,
    e2e_cuda_graphs: Annotated[
        bool, typer.Option(help="End to end with the CUDA-graph encoder.")
    ] = False,
    e2e_kernel: Annotated[str, typer.Option(help="Fast mode kernel end to end.")] = "auto",
    e2e_davis: Annotated[
        bool, typer.Option(help="Also a DAVIS sequence end to end, where the data is.")
    ] = True,
    e2e_warmup_frames: Annotated[
        int, typer.Option(help="Untimed frames through the pipeline first.")
    ] = 0,
    warmup: Annotated[int, typer.Option()] = 2,
    runs: Annotated[int, typer.Option()] = 10,
    e2e_frames: Annotated[
        int, typer.Option(help="Frames per end-to-end video (steady state needs > 51).")
    ] = 240,
    e2e_size: Annotated[str, typer.Option(help="Generated video size, HEIGHTxWIDTH.")] = "480x854",
    memory_lengths: Annotated[
        str, typer.Option(help="Video lengths for the memory curve.")
    ] = "100,1000,10000",
    memory_grid: Annotated[str, typer.Option(help="Feature grid for the memory curve.")] = "60x107",
    davis: Annotated[
        Path, typer.Option(help="DAVIS-2016 root for the DAVIS end-to-end clip and --agreement.")
    ] = DAVIS_ROOT,
    agreement_sequence: Annotated[str, typer.Option(help="DAVIS-2016 val sequence.")] = "bmx-trees",
    agreement_frames: Annotated[int, typer.Option(help="Frames from its start.")] = 20,
    precisions: Annotated[
        str,
        typer.Option(help="Precisions for --agreement (default: fp32, plus fp16, bf16 on CUDA)."),
    ] = "",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("benchmarks/results"),
) -> None:
    """Run the selected parts (all when none is selected)."""
    with user_errors():
        if not (encoder or propagation or e2e or memory or agreement):
            encoder = propagation = e2e = memory = agreement = True
        target = resolve_device(device)
        out.mkdir(parents=True, exist_ok=True)
        size_names = _split(sizes)
        results: dict = {
            "environment": describe(target),
            "settings": {
                "warmup": warmup,
                "runs": runs,
                "sizes": size_names,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            "skipped": [],
        }

        def save() -> None:
            write_json(results, out / "latency.json")

        with tempfile.TemporaryDirectory(prefix="hvc-bench-") as scratch:
            if encoder:
                with _part("encoder: exporting and loading backends"):
                    variants = build_variants(_split(backends), target, Path(scratch))
                results["skipped"] += [
                    {"backend": v.name, "reason": v.skipped} for v in variants if v.skipped
                ]
                with _part("encoder: timing"):
                    results["encoder"] = cases.encoder_rows(
                        variants,
                        size_names,
                        [int(b) for b in _split(batches)],
                        target,
                        warmup,
                        runs,
                    )
                save()
            chosen = _split(implementations)
            runnable = [name for name in chosen if not cases.unavailable(name, target)]
            results["skipped"] += [
                {"backend": name, "reason": cases.unavailable(name, target)}
                for name in chosen
                if name not in runnable
            ]
            if propagation:
                with _part("propagation: timing"):
                    results["propagation"] = cases.propagation_rows(
                        size_names,
                        [int(d) for d in _split(dims)],
                        [int(c) for c in _split(contexts)],
                        runnable,
                        target,
                        warmup,
                        runs,
                        _split(feature_dtypes),
                        results["skipped"],
                        [int(n) for n in _split(threads)],
                    )
                save()
            if e2e:
                with _part("end to end"):
                    height, width = cases.frame_size(e2e_size)
                    folder = Path(scratch) / "generated"
                    folder.mkdir()
                    sources = {}
                    if e2e_generated:
                        generated = cases.generated_video(folder, e2e_frames, height, width)
                        sources["generated"] = generated
                    if e2e_davis and davis.is_dir():
                        first = read_mask(
                            davis / "Annotations" / "480p" / "blackswan" / "00000.png"
                        )
                        frames = cases.ImageFolderSource(
                            davis / "JPEGImages" / "480p" / "blackswan"
                        )
                        looped = Path(scratch) / "blackswan"
                        looped.mkdir()
                        played = cases.ping_pong(frames, e2e_frames, looped)
                        sources["davis2016/blackswan (forth and back)"] = (played, first)
                    results["end_to_end"] = cases.end_to_end_rows(
                        sources,
                        _split(e2e_modes),
                        target,
                        precisions=_split(e2e_precision),
                        cuda_graphs=e2e_cuda_graphs,
                        kernel=e2e_kernel,
                        warmup_frames=e2e_warmup_frames,
                    )
                save()
            if memory:
                with _part("memory vs video length"):
                    grid = cases.frame_size(memory_grid)
                    fastest = "fast-triton" if "fast-triton" in runnable else "fast"
                    results["memory"] = cases.memory_rows(
                        [int(n) for n in _split(memory_lengths)], grid, 256, target, fastest
                    )
                save()
            if agreement and not davis.is_dir():
                results["skipped"].append(
                    {"backend": "agreement", "reason": f"no DAVIS data at {davis}"}
                )
            elif agreement:
                with _part("agreement: fast vs reference on DAVIS"):
                    chosen = _split(precisions) or (
                        ["fp32", "fp16", "bf16"] if target.type == "cuda" else ["fp32"]
                    )
                    source, truth = cases.davis_clip(davis, agreement_sequence, agreement_frames)
                    encoders = agreement_encoders(target, Path(scratch))
                    results["agreement"] = cases.agreement_rows(
                        source, truth, encoders, target, chosen
                    )
                    results["settings"]["agreement"] = {
                        "sequence": agreement_sequence,
                        "frames": len(truth),
                    }
        written = write_all(results, out)
    console.print(markdown(results), markup=False, highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in written)}", markup=False)


def agreement_encoders(device, folder: Path) -> dict:
    """The packaged default encoder through every backend that runs on `device`."""
    from hvc_runtime.encoder.checkpoints import load_encoder

    encoders = {"torch": load_encoder(None).encoder}
    formats = {"torchscript": "torchscript", "onnxruntime": "onnx"}
    if device.type == "cuda" and importlib.util.find_spec("tensorrt"):
        formats["tensorrt"] = "trt"
    for name, fmt in formats.items():
        encoders[name] = export_and_load(fmt, folder, device)
    return encoders


if __name__ == "__main__":
    app()
