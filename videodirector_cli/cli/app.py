"""The ``vdir`` entry point: builds the Typer app and turns VdirErrors into one-line exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from videodirector_cli import __version__
from videodirector_cli.errors import InterruptedByUser, VdirError

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "VDIR_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")


def report_error(message: str) -> None:
    sys.stderr.write(f"vdir: error: {message}\n")
    sys.stderr.flush()


def handles_errors(func: F) -> F:
    """Wrap a command: VdirError -> one line on stderr + its exit code; Ctrl-C -> 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except VdirError as exc:
            if debug_enabled():
                raise
            report_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            report_error("interrupted; progress so far is saved, run the same command to resume")
            raise typer.Exit(InterruptedByUser.exit_code) from None
        except Exception as exc:
            if debug_enabled():
                raise
            oom = _out_of_memory_message(exc)
            if oom:
                report_error(oom)
                raise typer.Exit(9) from None
            report_error(
                f"internal error: {type(exc).__name__}: {exc} "
                f"(this is a bug; set {DEBUG_ENV}=1 for the traceback)"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _out_of_memory_message(exc: BaseException) -> str | None:
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return (
            "the GPU ran out of memory; try --dtype fp16/bf16, fewer frames (vdir init --frames), "
            "a smaller --size, or --offload where the command offers it"
        )
    return None


app = typer.Typer(
    name="vdir",
    help="Edit real videos with a text prompt (VideoDirector on AnimateDiff).\n\n"
    "Typical session: vdir init clip.mp4 work && cd work && vdir mask --box X0,Y0,X1,Y1 && "
    "vdir invert && vdir edit 'a tiger walking' && vdir render --compare",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vdir {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Edit real videos with a text prompt (VideoDirector on AnimateDiff)."""


def _register_commands() -> None:
    from videodirector_cli.cli import (
        batch_cmd,
        demo_cmd,
        edit_cmd,
        eval_cmd,
        init_cmd,
        invert_cmd,
        mask_cmd,
        render_cmd,
        report_cmd,
        status_cmd,
    )

    for module in (
        init_cmd,
        mask_cmd,
        invert_cmd,
        edit_cmd,
        render_cmd,
        eval_cmd,
        report_cmd,
        status_cmd,
        demo_cmd,
        batch_cmd,
    ):
        module.register(app)


_register_commands()


def main() -> None:
    app()
