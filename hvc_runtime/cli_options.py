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
from typing import Annotated, Any

import typer

from hvc_runtime.terminal import user_errors


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
            kind = str if typing.get_origin(hints[name]) is typing.Literal else hints[name]
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
