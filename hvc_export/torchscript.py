"""TorchScript export: traced (the graph has no data-dependent control flow), loadable with
plain `torch.jit.load`; traced convolutions keep working at other frame sizes."""

from __future__ import annotations

from pathlib import Path

import torch

from hvc_export.graph import ExportGraph
from hvc_export.request import ExportRequest
from hvc_runtime.encoder.backends.torchscript import quiet_jit


def export_torchscript(graph: ExportGraph, request: ExportRequest, path: Path) -> dict:
    example = torch.rand(1, 3, *request.shapes.opt)
    with torch.inference_mode(False), torch.no_grad(), quiet_jit():
        traced = torch.jit.trace(graph, example, check_trace=False)
        traced.save(str(path))
    return {}
