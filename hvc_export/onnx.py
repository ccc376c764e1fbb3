"""ONNX export through the current (dynamo) exporter, with dynamic batch, height and width."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from hvc_export.graph import ExportGraph
from hvc_export.request import ExportRequest
from hvc_runtime.utils.optional import require

OPSET = 18
INPUT, OUTPUT = "frames", "features"


def export_onnx(graph: ExportGraph, request: ExportRequest, path: Path) -> dict:
    onnx = require("onnx", "ONNX export needs onnx and onnxscript (pip install 'hvc[onnx]')")
    shapes, max_batch = request.shapes, request.max_batch
    # an example of batch 2 keeps the batch dimension symbolic (size 1 would be specialised)
    example = torch.rand(2, 3, *shapes.opt)
    dims = {
        0: torch.export.Dim("batch", min=1, max=max(max_batch, 2)),
        2: torch.export.Dim("height", min=shapes.min[0], max=shapes.max[0]),
        3: torch.export.Dim("width", min=shapes.min[1], max=shapes.max[1]),
    }
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            dynamo=True,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={"frames": dims},
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    onnx.checker.check_model(str(path), full_check=True)
    return {}
