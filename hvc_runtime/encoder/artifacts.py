"""The manifest written next to every exported encoder, and the checks made before loading one.

The input contract is the same for every format: float32 NCHW RGB frames in [0, 1], ImageNet
normalisation inside the graph; the output is L2-normalised stride-8 features (float32 or float16,
as the artifact's precision says) of size ceil(H/8)×ceil(W/8).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hvc_runtime.encoder.formats import FORMATS
from hvc_runtime.encoder.precision import EXPORT_PRECISIONS
from hvc_runtime.utils.errors import HvcError

MANIFEST_VERSION = 2  # 2: `weights` names the published models or URLs it was made from
INPUT_CONTRACT = {
    "name": "frames",
    "layout": "NCHW",
    "dtype": "float32",
    "color": "RGB",
    "range": [0.0, 1.0],
    "normalization": "inside",
}


@dataclass
class Manifest:
    """What an artifact is, what it takes, where it came from and how well it matched PyTorch."""

    format: str
    precision: str
    feature_dim: int
    shape_range: dict[str, list[int]]  # min/opt/max as [height, width]
    batch_range: list[int]
    source_sha256: str
    versions: dict[str, str]
    parity: dict[str, Any]
    stride: int = 8
    input: dict[str, Any] = field(default_factory=lambda: dict(INPUT_CONTRACT))
    output: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)  # GPU name/capability for engines
    normalization: dict[str, list[float]] = field(default_factory=dict)
    weights: dict[str, dict[str, str]] = field(default_factory=dict)  # by role: name, sha256
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def manifest_path(artifact: Path) -> Path:
    return Path(str(artifact) + ".json")


def read_manifest(artifact: Path) -> Manifest:
    """The manifest beside `artifact`, checked for the contract this runtime speaks."""
    path = manifest_path(artifact)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise HvcError(f"{artifact}: no manifest ({path.name}); export it with hvc-export") from exc
    except json.JSONDecodeError as exc:
        raise HvcError(f"{path}: manifest is not valid JSON ({exc})") from exc
    try:
        manifest = Manifest(**data)
    except TypeError as exc:
        raise HvcError(f"{path}: not an hvc manifest ({exc})") from exc
    if manifest.manifest_version > MANIFEST_VERSION:
        raise HvcError(
            f"{path}: manifest version {manifest.manifest_version} is newer than this hvc"
        )
    if manifest.format not in FORMATS:
        raise HvcError(f"{path}: unknown format {manifest.format!r}")
    if manifest.precision not in EXPORT_PRECISIONS:
        raise HvcError(
            f"{path}: precision {manifest.precision!r} is not one artifacts are exported in "
            f"({', '.join(EXPORT_PRECISIONS)})"
        )
    if not isinstance(manifest.feature_dim, int) or manifest.feature_dim < 1:
        raise HvcError(f"{path}: feature_dim {manifest.feature_dim!r} is not a feature size")
    if manifest.input != INPUT_CONTRACT:
        raise HvcError(
            f"{path}: input contract {manifest.input} differs from this runtime's {INPUT_CONTRACT}"
        )
    if manifest.stride != 8:
        raise HvcError(f"{path}: stride {manifest.stride} is not supported (8)")
    return manifest


def contradiction(artifact: Path, claim: str, found: str) -> HvcError:
    """The manifest says one thing and the file another; what would run is the file, so the
    artifact is refused rather than reported as the manifest describes it."""
    return HvcError(
        f"{artifact}: its manifest ({manifest_path(artifact).name}) says {claim}, but the file "
        f"{found}; export it again with hvc-export"
    )


_ZIP_MAGIC = b"PK\x03\x04"  # TorchScript archives are zip files
_ONNX_FIRST_BYTE = b"\x08"  # an ONNX model is protobuf, field 1 (ir_version) first


def check_file_format(artifact: Path, manifest: Manifest) -> None:
    """Refuse an artifact whose bytes are plainly another format than its manifest names."""
    try:
        with open(artifact, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise HvcError(f"{artifact}: cannot read the artifact ({exc.strerror})") from exc
    if head.startswith(_ZIP_MAGIC):
        found = "torchscript"
    elif head.startswith(_ONNX_FIRST_BYTE):
        found = "onnx"
    else:
        found = None
    if found == manifest.format or (found is None and manifest.format != "torchscript"):
        return  # an engine has no magic to test; a broken file is the runtime's to report
    what = {
        "torchscript": "is a zip archive (TorchScript)",
        "onnx": "is an ONNX model",
        None: "is not a zip archive, which every TorchScript file is",
    }[found]
    raise contradiction(artifact, f"format {manifest.format}", what)
