"""Command-line options generated from the API they configure, so defaults live in one place.

`hvc-run` and `hvc-eval` take the keyword arguments of `Segmenter.from_checkpoint` and the
fields of `PropagationConfig` as options: `@api_command(...)` adds them to a command's signature
(defaults, types and help from the API), hands the command one built value per group, and runs
it under the one-line error rule (`user_errors`) with the flags it declared.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hvc_runtime.cli.terminal import console, user_errors
from hvc_runtime.encoder.backends import TORCH_BACKENDS
from hvc_runtime.encoder.formats import FORMATS
from hvc_runtime.encoder.published import model_names
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.segmenter import Segmenter


@dataclasses.dataclass(frozen=True)
class OptionGroup:
    """Options taken from a callable's keyword parameters or a dataclass's fields.

    `build` turns the parsed values into what the command receives (default: the dict)."""

    source: Callable[..., Any]
    help: Mapping[str, str] = dataclasses.field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    build: Callable[[dict[str, Any]], Any] = dict

    def parameters(self, flags: Mapping[str, str]) -> list[inspect.Parameter]:
        """Keyword-only typer options; Literal choices are checked by the API, so that a bad
        value gets the project's one-line error rather than a usage screen."""
        hints = typing.get_type_hints(self.source)
        out = []
        for name, default, help_text in self._entries():
            decls = (flags[name],) if name in flags else ()
            kind = _option_type(hints[name])
            annotation = Annotated[kind, typer.Option(*decls, help=help_text)]
            out.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )
        return out

    def _entries(self) -> list[tuple[str, Any, str]]:
        if dataclasses.is_dataclass(self.source):
            return [
                (f.name, f.default, f.metadata.get("help", self.help.get(f.name, "")))
                for f in dataclasses.fields(self.source)
                if f.name not in self.skip
            ]
        return [
            (p.name, p.default, self.help.get(p.name, ""))
            for p in inspect.signature(self.source).parameters.values()
            if p.default is not inspect.Parameter.empty and p.name not in self.skip
        ]

    def names(self) -> list[str]:
        return [name for name, _, _ in self._entries()]


def _option_type(hint: Any) -> Any:
    """What typer parses an option as: Literal choices and `str | Path` values (a path, a
    name or a URL, which a path would mangle) as text, for the API to check and tell apart."""
    if typing.get_origin(hint) is typing.Literal:
        return str
    choices = typing.get_args(hint)
    if str in choices:
        return str | None if type(None) in choices else str
    return hint


def api_command(
    flags: Mapping[str, str] | None = None, **groups: OptionGroup
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace each `group` parameter of the command by the group's options (see module doc).

    `flags` renames options whose flag differs from their name (`context_size` → `--context`);
    building a group (a config validates itself) is inside the command's error handling."""
    flags = dict(flags or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name not in groups]
        added = [p for group in groups.values() for p in group.parameters(flags)]

        @functools.wraps(command)
        def wrapper(**values: Any) -> Any:
            with user_errors(flags):
                for key, group in groups.items():
                    values[key] = group.build({n: values.pop(n) for n in group.names()})
                return command(**values)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return wrapper

    return decorate


FLAGS = {"context_size": "--context", "short_side": "--size"}
SEGMENTER = OptionGroup(
    Segmenter.from_checkpoint,
    help={
        "checkpoint": "Encoder: hvc .safetensors, official .pth, an hvc-export artifact, one of "
        f"the authors' trained models ({', '.join(model_names('checkpoint'))}; downloaded once "
        "into the cache, see docs/models.md) or an https:// URL (default: the default encoder).",
        "device": "auto, cpu, cuda, cuda:N or mps.",
        "precision": "fp32, fp16 or bf16 (features and affinities).",
        "backend": f"Encoder runtime: auto, {', '.join(TORCH_BACKENDS)} (checkpoints), or "
        f"{', '.join(spec.runtime for spec in FORMATS.values())} (exported artifacts; auto "
        "reads the artifact's manifest).",
        "mode": "Propagation: fast (local windows) or reference (dense official layout); "
        "same masks.",
        "kernel": "Scoring kernel of the fast mode: auto (Triton on CUDA), torch or triton.",
        "gpu_decode": "Decode JPEG frame folders on the GPU (nvJPEG; its pixels differ slightly "
        "from PIL's: turn it off to compare with CPU or official runs exactly).",
        "short_side": "Resize frames so the short side is SIZE before encoding (default: native).",
        "moco": "MoCo-v1 ResNet-50 to fuse (1280-d features, λ=1.05): "
        f"{', '.join(model_names('moco'))} (downloaded once), an official .pth or an https:// URL.",
        "official_bn_drift": "Replay the official loader's train-mode dummy forward, which "
        "shifts BatchNorm statistics (an official bug; needed to reproduce official masks).",
    },
    skip=frozenset({"config"}),
)
PROPAGATION = OptionGroup(PropagationConfig, build=lambda values: PropagationConfig(**values))


def local_weights(options: dict) -> list[Path]:
    """The weights options that are local files: inputs a result must never replace (a model
    name or a URL is fetched into the cache instead)."""
    given = (options["checkpoint"], options["moco"])
    return [Path(value) for value in given if value is not None and Path(value).exists()]


def build_segmenter(options: dict, config: PropagationConfig) -> Segmenter:
    """`Segmenter.from_checkpoint` with the options, saying which encoder it loaded."""
    segmenter = Segmenter.from_checkpoint(config=config, **options)
    source = segmenter.source
    style = (
        ""
        if source.trusted
        else "[yellow]warning:[/] " + (f"{source.caveat}, " if source.caveat else "")
    )
    console.print(f"{style}encoder: {escape(source.description)}", highlight=False)
    console.print(
        f"device: {segmenter.device}, precision: {segmenter.precision}, "
        f"size: {segmenter.short_side or 'native'}, mode: {segmenter.mode}",
        highlight=False,
        markup=False,
    )
    return segmenter
