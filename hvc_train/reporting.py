"""Where a run's figures go: a progress bar on terminals, one plain line per log interval in
logs (schedulers, pipes), TensorBoard scalars, and health warnings as one `warning:` line."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hvc_runtime.cli.terminal import console
from hvc_runtime.utils.errors import HvcWarning
from hvc_train.health import HealthFigures


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(
            "tensorboard is not installed; scalars are not logged (pip install tensorboard)",
            HvcWarning,
            stacklevel=2,
        )
        return None
    return SummaryWriter(str(folder))


class Reporter:
    """Progress, scalars and warnings of one run; `tensorboard` is None on ranks other than 0,
    and `show` False keeps the terminal quiet (tests, other ranks)."""

    def __init__(self, tensorboard: Path | None, show: bool, total: int, start: int) -> None:
        self.writer = _tensorboard(tensorboard) if tensorboard is not None else None
        self.show = show
        self.total = total
        self.start = start
        self.began = time.perf_counter()
        self.health_text = ""
        self.unhealthy = False
        self.interactive = show and console.is_terminal
        self.bar = Progress(
            TextColumn("{task.description} step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} img/s"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[health]}"),
            console=console,
            disable=not self.interactive,
        )
        self.task = self.bar.add_task(
            "training", total=total, completed=start, loss=float("nan"), rate=0.0, health=""
        )

    def __enter__(self) -> Reporter:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()
        if self.writer is not None:
            self.writer.close()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def progress(self, step: int, loss: float, rate: float) -> None:
        self.bar.update(self.task, completed=step, loss=loss, rate=rate, health=self.health_text)
        if self.show and not self.interactive:
            elapsed = time.perf_counter() - self.began
            eta = elapsed / max(step - self.start, 1) * (self.total - step)
            console.print(
                f"step {step}/{self.total}  loss {loss:.4f}  {rate:.1f} img/s  "
                f"eta {eta:.0f} s  {self.health_text}".rstrip(),
                markup=False,
                highlight=False,
            )

    def health(self, step: int, figures: HealthFigures, problems: list[str]) -> None:
        """Log the figures; warn once when they cross a threshold (and again after a recovery)."""
        self.health_text = figures.summary()
        self.scalars(step, {f"health/{k}": v for k, v in figures.scalars().items()})
        if problems and not self.unhealthy:
            text = f"step {step}: features are collapsing: {'; '.join(problems)}"
            if self.writer is not None:
                self.writer.add_text("health/warning", text, step)
            warnings.warn(text, HvcWarning, stacklevel=2)
        self.unhealthy = bool(problems)
