"""hvc-export: TorchScript and ONNX artifacts loaded back and checked, manifests, refusals."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torchvision.models import resnet18, resnet50
from typer.testing import CliRunner

from benchmarks.mask_agreement import pixel_agreement
from hvc_export.cli import app as export_app
from hvc_export.exporter import ExportRequest, export
from hvc_export.graph import ExportGraph, ShapeRange
from hvc_export.parity import check_parity
from hvc_runtime.cli import run_app
from hvc_runtime.encoder.artifacts import INPUT_CONTRACT, manifest_path, read_manifest
from hvc_runtime.encoder.backends import load_backend
from hvc_runtime.encoder.backends.torchscript import quiet_jit
from hvc_runtime.encoder.checkpoints import CheckpointHeader, load_encoder, save_encoder
from hvc_runtime.encoder.formats import FORMATS
from hvc_runtime.utils.errors import HvcError
from tests.conftest import smooth_texture

SMALL = ShapeRange((64, 64), (128, 160), (256, 320))
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(3)
    torch.save(resnet18(weights=None).state_dict(), root / "hvc_ytb.pth")
    trained = load_encoder(root / "hvc_ytb.pth").encoder
    save_encoder(
        trained.backbone, root / "ours.safetensors", CheckpointHeader(training={"steps": 1})
    )
    return {"random": None, "official": root / "hvc_ytb.pth", "project": root / "ours.safetensors"}


@pytest.mark.parametrize(
    ("fmt", "source"),
    [
        ("torchscript", "random"),
        ("torchscript", "official"),
        ("onnx", "random"),
        ("onnx", "project"),
    ],
)
def test_round_trip_and_parity(checkpoints, tmp_path, fmt, source):
    out = tmp_path / f"enc{FORMATS[fmt].suffix}"
    result = export(ExportRequest(checkpoints[source], fmt, out, shapes=SMALL))
    assert result.report.passed and len(result.report.sizes) == 2
    assert result.report.mean_cosine >= 0.99999 and result.report.mask_agreement == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, f"{out.name}.json"])
    manifest = read_manifest(out)
    assert (
        manifest.format == fmt and manifest.feature_dim == 256 and manifest.input == INPUT_CONTRACT
    )
    assert manifest.parity["passed"] and manifest.versions["torch"] == torch.__version__
    if checkpoints[source] is not None:
        import hashlib

        assert (
            manifest.source_sha256 == hashlib.sha256(checkpoints[source].read_bytes()).hexdigest()
        )
    backend, _ = load_backend(out, CPU)
    reference = load_encoder(checkpoints[source]).encoder
    for shape in [(1, 3, 72, 96), (2, 3, 61, 93)]:  # any size in range, batch 1 and N
        x = torch.rand(shape)
        torch.testing.assert_close(backend(x), reference(x), atol=1e-4, rtol=1e-4)
    if fmt == "torchscript":
        with quiet_jit():
            assert isinstance(torch.jit.load(str(out)), torch.jit.ScriptModule)


def test_fp16_onnx_passes_the_fp16_tolerance(tmp_path):
    result = export(
        ExportRequest(None, "onnx", tmp_path / "enc16.onnx", precision="fp16", shapes=SMALL)
    )
    assert result.report.passed and result.report.mean_cosine >= 0.999
    assert result.report.mask_agreement >= 0.995
    assert read_manifest(tmp_path / "enc16.onnx").output["dtype"] == "float16"


def test_fused_hvc_moco_graph(checkpoints, tmp_path):
    torch.manual_seed(4)
    moco = {f"module.encoder_q.{k}": v for k, v in resnet50(weights=None).state_dict().items()}
    torch.save({"state_dict": moco}, tmp_path / "moco.pth.tar")
    out = tmp_path / "fused.onnx"
    result = export(
        ExportRequest(
            checkpoints["official"], "onnx", out, moco=tmp_path / "moco.pth.tar", shapes=SMALL
        )
    )
    assert result.report.passed and result.manifest.feature_dim == 1280
    backend, _ = load_backend(out, CPU)
    assert backend(torch.rand(1, 3, 64, 80)).shape == (1, 1280, 8, 10)


class NoisyGraph(ExportGraph):
    """A deliberately broken export: features perturbed before they leave the graph."""

    def forward(self, frames):
        features = super().forward(frames)
        return torch.nn.functional.normalize(features + 0.05 * torch.sin(features * 97), dim=1)


def test_broken_artifact_is_refused_unless_forced(tmp_path, monkeypatch):
    import hvc_export.exporter as exporter

    monkeypatch.setattr(exporter, "ExportGraph", NoisyGraph)
    out = tmp_path / "broken.onnx"
    with pytest.raises(HvcError, match="parity check failed"):
        export(ExportRequest(None, "onnx", out, shapes=SMALL))
    assert list(tmp_path.iterdir()) == []
    forced = export(ExportRequest(None, "onnx", out, shapes=SMALL, force=True))
    assert not forced.report.passed and read_manifest(out).parity["passed"] is False


def test_parity_report_flags_a_different_encoder():
    reference, other = load_encoder().encoder, load_encoder().encoder
    torch.nn.init.normal_(other.backbone.conv1.weight)
    report = check_parity(reference, other, "fp32", [(64, 80)], clip_length=3)
    assert not report.passed and report.mean_cosine < 0.99999


def test_bad_requests(checkpoints, tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "notanencoder.pth")
    with pytest.raises(HvcError, match="not a resnet18 layer3 encoder checkpoint"):
        export(
            ExportRequest(tmp_path / "notanencoder.pth", "onnx", tmp_path / "a.onnx", shapes=SMALL)
        )
    with pytest.raises(HvcError, match="shape range is empty"):
        ShapeRange((256, 256), (128, 128), (512, 512))
    with pytest.raises(HvcError, match="not a multiple of 8"):
        ShapeRange((60, 64), (128, 128), (512, 512)).require_multiple_of_8()
    with pytest.raises(HvcError, match="not a resnet18"):
        export(
            ExportRequest(
                tmp_path / "notanencoder.pth", "onnx", tmp_path / "new" / "a.onnx", shapes=SMALL
            )
        )
    assert not (tmp_path / "new").exists()  # a failed export makes no folder
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("running as a user that can write anywhere")  # root ignores permissions
        with pytest.raises(HvcError, match="not writable"):
            export(ExportRequest(None, "onnx", readonly / "a.onnx", shapes=SMALL))
    finally:
        readonly.chmod(0o700)


def test_cli_errors_and_trt_without_tensorrt_or_gpu(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        export_app, ["--format", "onnx", "--min-shape", "big", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 1 and "expected HEIGHTxWIDTH" in result.stderr
    result = runner.invoke(export_app, ["--format", "trt", "--out", str(tmp_path / "a.engine")])
    assert result.exit_code == 1
    assert "TensorRT is not installed" in result.stderr or "need an NVIDIA GPU" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_runtime_refuses_incompatible_artifacts(tmp_path):
    out = tmp_path / "enc.pt"
    export(ExportRequest(None, "torchscript", out, shapes=SMALL))
    manifest = json.loads(manifest_path(out).read_text())
    manifest_path(out).write_text(
        json.dumps({**manifest, "input": {**INPUT_CONTRACT, "layout": "NHWC"}})
    )
    with pytest.raises(HvcError, match="input contract"):
        load_backend(out, CPU)
    manifest_path(out).write_text(json.dumps({**manifest, "manifest_version": 9}))
    with pytest.raises(HvcError, match="newer than this hvc"):
        load_backend(out, CPU)
    manifest_path(out).unlink()
    with pytest.raises(HvcError, match="no manifest"):
        load_backend(out, CPU)


def test_hvc_run_uses_an_artifact_by_its_manifest(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "enc.onnx"
    export(ExportRequest(None, "onnx", out, shapes=SMALL))
    runner = CliRunner()
    for name, extra in (("torch", []), ("onnx", ["--checkpoint", str(out)])):
        result = runner.invoke(
            run_app, [str(video), str(mask), "--out", str(tmp_path / name), "--no-overlay", *extra]
        )
        assert result.exit_code == 0, result.stderr
    assert "onnx fp32 artifact" in result.stderr and "on onnxruntime" in result.stderr
    # ONNX Runtime's fp32 kernels round differently from torch's: a pixel near a tie may flip.
    agreement, frames = pixel_agreement(tmp_path / "torch" / "masks", tmp_path / "onnx" / "masks")
    assert frames == 6 and agreement >= 99.9
    refusals = {
        "a onnx artifact runs on onnxruntime, not tensorrt": ["--checkpoint", str(out)],
        "--backend onnxruntime: runs an exported encoder": [],
    }
    for message, extra in refusals.items():
        backend = "tensorrt" if extra else "onnxruntime"
        result = runner.invoke(
            run_app,
            [str(video), str(mask), "--out", str(tmp_path / "x"), "--backend", backend, *extra],
        )
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "x").exists()


def test_tensorrt_engine_round_trip(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT builder not installed (see docs/export.md)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU")
    shapes = ShapeRange((64, 64), (128, 160), (256, 320))
    result = export(
        ExportRequest(
            None, "trt", tmp_path / "enc.engine", shapes=shapes, timing_cache=tmp_path / "cache"
        )
    )
    assert result.report.passed and (tmp_path / "cache").is_file()
    assert smooth_texture(8, 8).shape == (8, 8, 3)
