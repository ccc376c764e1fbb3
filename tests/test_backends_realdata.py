"""Every encoder backend that runs on CPU gives the reference masks on a real DAVIS clip.

The reference is the dense propagator over the PyTorch fp32 encoder; each backend runs in the
fast mode, as `hvc-run` does. Weights: the official-format parity checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest

from hvc_export.exporter import ExportRequest, export
from hvc_export.graph import ShapeRange
from hvc_runtime.encoder.backends import load_backend
from hvc_runtime.encoder.backends.torch_module import TorchBackend
from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.io.frames import ImageFolderSource
from hvc_runtime.io.masks import read_mask
from hvc_runtime.segmenter import Segmenter
from tests.conftest import DAVIS2016, PARITY

SEQUENCE, FRAMES = "car-shadow", 6
NATIVE = ShapeRange((240, 432), (480, 854), (480, 864))


def _masks(segmenter: Segmenter) -> list[np.ndarray]:
    first = read_mask(DAVIS2016 / "Annotations" / "480p" / SEQUENCE / "00000.png")
    source = ImageFolderSource(DAVIS2016 / "JPEGImages" / "480p" / SEQUENCE)
    return [
        segmenter.step(frame.rgb, first if frame.index == 0 else None)
        for frame, _ in zip(source, range(FRAMES), strict=False)
    ]


@pytest.mark.realdata
@pytest.mark.slow
def test_cpu_backends_reproduce_the_reference_masks(tmp_path):
    weights = PARITY / "weights_official_format.pth"
    encoder = load_encoder(weights).encoder
    reference = _masks(Segmenter(encoder, device="cpu", mode="reference"))
    backends = {
        "torch": TorchBackend(encoder, "cpu"),
        "torch-compile": TorchBackend(encoder, "cpu", compile=True),
    }
    for fmt, name in (("torchscript", "enc.pt"), ("onnx", "enc.onnx")):
        export(ExportRequest(weights, fmt, tmp_path / name, shapes=NATIVE))
        backends[fmt], _ = load_backend(tmp_path / name, "cpu")
    for name, backend in backends.items():
        masks = _masks(Segmenter(backend, device="cpu", mode="fast"))
        agreement = [float((a == b).mean()) for a, b in zip(reference, masks, strict=True)]
        print(name, [round(a, 6) for a in agreement])
        assert min(agreement) >= 0.999, name
