"""The one rich console everything prints through, and the progress bar style."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False, soft_wrap=True)  # long paths in CI logs stay on one line
stdout_console = Console(highlight=False, soft_wrap=True)  # what list commands print is their result: stdout


def print_table(table, *, to_stdout: bool = False) -> None:
    """A table at the terminal's width on a terminal; piped or logged, at its natural width, so no name is cut."""
    out = stdout_console if to_stdout else console
    if out.is_terminal:
        out.print(table)
        return
    from rich.measure import Measurement

    natural = Measurement.get(out, out.options.update(max_width=100_000), table).maximum
    Console(file=out.file, width=natural, highlight=False, soft_wrap=True, no_color=out.no_color).print(table)


def log(message: str, style: str | None = None) -> None:
    """One line of progress. The message is plain text (paths may hold brackets), never rich markup."""
    console.print(f"[dim]·[/dim] {escape(message)}" if style is None else f"[dim]·[/dim] [{style}]{escape(message)}[/{style}]")


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def quiet_libraries() -> None:
    """Our progress bars and log lines only: silence the libraries' own bars, warnings and info logs."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization logs its advice at WARNING on root
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
