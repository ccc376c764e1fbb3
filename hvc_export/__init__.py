"""hvc export: TorchScript, ONNX and TensorRT artifacts of the encoder; builds on hvc_runtime."""

from hvc_export.exporter import EXPORTERS, ExportResult, default_artifact_path, export
from hvc_export.request import ExportRequest

__all__ = ["EXPORTERS", "ExportRequest", "ExportResult", "default_artifact_path", "export"]
