"""hvc export: TorchScript, ONNX and TensorRT artifacts of the encoder (see issue 4); builds on hvc_runtime."""
