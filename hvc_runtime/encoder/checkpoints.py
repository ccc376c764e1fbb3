"""Loading and saving encoder weights: official `.pth` state dicts and the project's safetensors.

Official files are read with `torch.load(weights_only=True)` (never unpickled) and mapped to
torchvision key names here, in one place. The project's own checkpoints are safetensors whose
metadata holds a JSON header describing the architecture, normalisation and provenance.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hvc_runtime.encoder.formats import ARTIFACT_SUFFIXES
from hvc_runtime.encoder.hub import Weights, fetch_weights
from hvc_runtime.encoder.network import (
    MOCO_FUSION_WEIGHT,
    InferenceEncoder,
    Normalization,
    StrideEightResNet,
)
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError

FORMAT_VERSION = 1
HEADER_KEY = "hvc"
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "hvc_r18_default.safetensors"
DEFAULT_RANDOM_SEED = 0
# Keys that official checkpoints may carry but the layer3 inference trunk does not use.
_UNUSED_PREFIXES = ("layer4.", "fc.")


@dataclass
class CheckpointHeader:
    """What a project checkpoint says about itself (stored as JSON in safetensors metadata)."""

    architecture: str = "resnet18"
    last_layer: str = "layer3"
    feature_dim: int = 256
    normalization: dict[str, list[float]] = field(
        default_factory=lambda: {
            "mean": list(Normalization().mean),
            "std": list(Normalization().std),
        }
    )
    training: dict[str, Any] = field(default_factory=dict)
    git_revision: str = "unknown"
    format_version: int = FORMAT_VERSION


@dataclass
class LoadedEncoder:
    """An encoder, a one-line description of where its weights came from, and the files they
    were read from (`weights`: by role, checkpoint and moco)."""

    encoder: InferenceEncoder
    description: str
    trained: bool
    weights: dict[str, Weights] = field(default_factory=dict)


_ARTIFACT_HINT = "an exported artifact needs the manifest hvc-export writes beside it"


def _load_failure(path: Path, exc: Exception) -> HvcError:
    """Why torch.load refused a file, in one line, without torch's advice to unpickle it."""
    text = str(exc)
    if "TorchScript" in text:
        return HvcError(f"{path}: a TorchScript file without its manifest; {_ARTIFACT_HINT}")
    pickled = re.search(r"GLOBAL ([\w.]+)", text)
    if pickled:
        return HvcError(
            f"{path}: holds pickled Python objects ({pickled[1]}), not plain weights; hvc never "
            "unpickles files (it can run arbitrary code): save the model's state_dict() instead"
        )
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return HvcError(f"{path}: not a loadable PyTorch weights file")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return HvcError(f"{path}: not a loadable PyTorch weights file ({first})")


def _read_official(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix in ARTIFACT_SUFFIXES - {".pt"} and path.is_file():
        raise HvcError(f"{path}: no manifest {path.name}.json; {_ARTIFACT_HINT}")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a TorchScript file
            warnings.filterwarnings("ignore", message=".*TorchScript archive")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise HvcError(f"{path}: checkpoint not found") from exc
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise _load_failure(path, exc) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HvcError(f"{path}: does not hold a state dict of tensors")
    return obj


def _select_trunk(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map official key layouts (`online_encoder.`, `module.`, MoCo's `module.encoder_q.`) to ours."""
    for prefix in ("online_encoder.", "module.online_encoder.", "module.encoder_q.", "encoder_q."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    else:
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(_UNUSED_PREFIXES)}


def load_trunk_weights(
    trunk: StrideEightResNet, state: dict[str, torch.Tensor], source: Path
) -> None:
    """Load a state dict strictly, naming missing, unexpected or mis-shaped keys in one line."""
    own = trunk.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_preview(unexpected)}")
        raise HvcError(
            f"{source}: not a {trunk.arch} {trunk.last_layer} encoder checkpoint: "
            + "; ".join(parts)
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise HvcError(
                f"{source}: wrong shape for {key}: {tuple(value.shape)}, "
                f"expected {tuple(own[key].shape)} for {trunk.arch}"
            )
        _check_values(source, key, value)
    trunk.load_state_dict(state, strict=False)


def _check_values(source: Path, key: str, value: torch.Tensor) -> None:
    """Weights that load but cannot give sane features: NaN/inf, or a negative variance."""
    if not value.is_floating_point():
        return
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise HvcError(f"{source}: {key} holds {bad} non-finite values (NaN or inf)")
    if key.endswith("running_var") and (value < 0).any():
        raise HvcError(f"{source}: {key} holds negative variances; the checkpoint is corrupt")


def _preview(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)} in all)"


def _read_project(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointHeader]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except FileNotFoundError as exc:
        raise HvcError(f"{path}: checkpoint not found") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise HvcError(f"{path}: not a readable safetensors file ({exc})") from exc
    if HEADER_KEY not in metadata:
        raise HvcError(f"{path}: safetensors file without the hvc header; not an hvc checkpoint")
    try:
        header = CheckpointHeader(**json.loads(metadata[HEADER_KEY]))
    except (TypeError, json.JSONDecodeError) as exc:
        raise HvcError(f"{path}: malformed hvc header ({exc})") from exc
    if header.format_version > FORMAT_VERSION:
        raise HvcError(
            f"{path}: checkpoint format {header.format_version} is newer than this hvc "
            f"({FORMAT_VERSION}); upgrade hvc"
        )
    return tensors, header


def default_model_summary(header: CheckpointHeader) -> str:
    """One line from a packaged encoder's model card: name, training and dev score."""
    card = header.training
    dev = card.get("dev_jf", {}).get("mean")
    score = f", DAVIS-2016 dev J&F {dev}" if dev is not None else ""
    return f"{card.get('name', 'unnamed')} ({card.get('steps')} steps on {card.get('data')}{score})"


def read_header(path: Path) -> CheckpointHeader:
    """What a project checkpoint says about itself (its training, revision, model card)."""
    return _read_project(Path(path))[1]


def random_encoder(seed: int = DEFAULT_RANDOM_SEED) -> InferenceEncoder:
    """A seeded random ResNet-18 layer3 encoder: He-normal convolutions, every BatchNorm at 1/0.

    Unlike the official training init, no BatchNorm is zeroed: with zeroed residual branches the
    random trunk collapses to conv1 plus 1x1 projections and barely matches anything. This is
    the recipe of the official-format parity weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = StrideEightResNet("resnet18", "layer3")
    for module in trunk.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    return InferenceEncoder(trunk).eval()


def replay_official_dims_probe(trunk: StrideEightResNet) -> None:
    """Shift BatchNorm running statistics exactly as the official encoder loader does.

    The official `make_encoder` measures the output stride with one forward pass of a
    1×3×256×256 zero image while the network is still in training mode, so every BatchNorm
    moves its running statistics one momentum step towards that image's statistics (with
    fresh statistics: running variance 1 → 0.9). The official masks depend on this side
    effect; the project does not do it unless asked, to reproduce them.
    """
    was_training = trunk.training
    trunk.train()
    with torch.no_grad():
        trunk(torch.zeros(1, 3, 256, 256, device=next(trunk.parameters()).device))
    trunk.train(was_training)


def load_encoder(
    checkpoint: str | Path | None = None,
    *,
    moco: str | Path | None = None,
    official_bn_drift: bool = False,
) -> LoadedEncoder:
    """Build the inference encoder from a checkpoint (project safetensors or official `.pth`).

    `checkpoint` and `moco` are paths, published model names (`hvc-ytb`, `moco-v1`, ...) or
    URLs, downloaded and checked on first use (`hvc_runtime.encoder.hub`). Without a checkpoint
    the packaged default encoder is used (`DEFAULT_CHECKPOINT`, trained by hvc-train; its
    header is its model card). `official_bn_drift` replays the official loader's BatchNorm side
    effect (`replay_official_dims_probe`) on every trunk, for exact parity with official outputs.
    """
    if checkpoint is None and not DEFAULT_CHECKPOINT.is_file():
        raise HvcError(
            f"{DEFAULT_CHECKPOINT}: the packaged default encoder is missing (a broken install); "
            "reinstall hvc or pass a checkpoint"
        )
    given = (
        fetch_weights(checkpoint, "checkpoint", _encoder_trunk) if checkpoint is not None else None
    )
    path = given.path if given else DEFAULT_CHECKPOINT
    trunk, normalization, trained = _encoder_trunk(path)
    if given:
        kind = "project" if path.suffix == ".safetensors" else "official-format"
        description = f"{kind} checkpoint {given.label}"
    else:
        description = f"default encoder {default_model_summary(read_header(path))}"
    loaded = LoadedEncoder(
        InferenceEncoder(trunk, normalization).eval(),
        description,
        trained,
        {"checkpoint": given} if given else {},
    )
    if moco is not None:
        fused = fetch_weights(moco, "moco", _moco_trunk)
        loaded.encoder = InferenceEncoder(
            loaded.encoder.backbone,
            loaded.encoder.normalization,
            fusion=_moco_trunk(fused.path),
            fusion_weight=MOCO_FUSION_WEIGHT,
        ).eval()
        loaded.weights["moco"] = fused
        loaded.description += (
            f" fused with MoCo-v1 ResNet-50 {fused.label} (λ={MOCO_FUSION_WEIGHT})"
        )
    if official_bn_drift:  # the official loader probes the MoCo trunk the same way
        trunks = [loaded.encoder.backbone, loaded.encoder.fusion]
        for trunk in filter(None, trunks):
            replay_official_dims_probe(trunk)
        loaded.description += ", with the official BatchNorm drift"
    return loaded


def _encoder_trunk(path: Path) -> tuple[StrideEightResNet, Normalization, bool]:
    """The ResNet-18 layer3 trunk in a checkpoint (ours or official, as its suffix says), the
    normalisation it expects, and whether it was trained."""
    trunk = StrideEightResNet("resnet18", "layer3")
    if path.suffix != ".safetensors":
        load_trunk_weights(trunk, _select_trunk(_read_official(path)), path)
        return trunk, Normalization(), True
    tensors, header = _read_project(path)
    if (header.architecture, header.last_layer) != ("resnet18", "layer3"):
        raise HvcError(
            f"{path}: encoder {header.architecture}/{header.last_layer} is not supported "
            "by the runtime (resnet18/layer3)"
        )
    normalization = Normalization(
        tuple(header.normalization["mean"]), tuple(header.normalization["std"])
    )
    load_trunk_weights(trunk, {k: v.float() for k, v in tensors.items()}, path)
    return trunk, normalization, bool(header.training)


def _moco_trunk(path: Path) -> StrideEightResNet:
    """The MoCo-v1 ResNet-50 layer3 trunk of an official MoCo checkpoint."""
    trunk = StrideEightResNet("resnet50", "layer3")
    load_trunk_weights(trunk, _select_trunk(_read_official(path)), path)
    return trunk


def save_encoder(
    trunk: StrideEightResNet,
    path: Path,
    header: CheckpointHeader,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write a project checkpoint atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
        for k, v in trunk.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(asdict(header))})
