"""TorchScript export: traced (the graph has no data-dependent control flow), loadable with
plain `torch.jit.load`; traced convolutions keep working at other frame sizes."""

from __future__ import annotations

from pathlib import Path

import torch

from hvc_export.graph import ExportGraph


def export_torchscript(graph: ExportGraph, example: torch.Tensor, path: Path) -> None:
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(graph, example, check_trace=False)
    traced.save(str(path))
