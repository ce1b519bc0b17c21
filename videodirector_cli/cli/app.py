"""The ``vdir`` entry point: builds the Typer app and turns VdirErrors into one-line exits."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from videodirector_cli import __version__
from videodirector_cli.errors import (
    InterruptedByUser,
    ResourceError,
    UsageError,
    VdirError,
    error_document,
    from_os_error,
)

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "VDIR_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")


def report_error(message: str) -> None:
    sys.stderr.write(f"vdir: error: {message}\n")
    sys.stderr.flush()


def report_json_error(error: VdirError) -> None:
    """With --json, a failed command's one document on stdout (beside the stderr line)."""
    from videodirector_cli.output import JSON_SCHEMA_VERSION

    document = {"schema_version": JSON_SCHEMA_VERSION, **error_document(error)}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def handles_errors(func: F) -> F:
    """Wrap a command: VdirError (and a user-fixable OSError: full disk, read-only folder) ->
    one line on stderr + its exit code, and with --json an error document on stdout; Ctrl-C ->
    130."""

    flags = option_flags(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_numbers(kwargs, flags)
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            error: VdirError = InterruptedByUser(
                "interrupted; progress so far is saved, run the same command to resume"
            )
        except Exception as exc:
            if debug_enabled():
                raise
            error = _as_vdir_error(exc)
        report_error(str(error))
        if kwargs.get("json_output"):
            report_json_error(error)
        raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


MAX_OPTION_INT = 2**63 - 1
"""No count, size or seed vdir takes is larger; a larger number is a typo (or a crafted call)."""


def option_flags(func: Callable[..., Any]) -> dict[str, str]:
    """Each parameter's first command-line flag ('--frames'), from its typer.Option."""
    import inspect
    import typing

    from typer.models import OptionInfo

    hints = typing.get_type_hints(func, include_extras=True)
    flags = {}
    for name, parameter in inspect.signature(func).parameters.items():
        infos = [parameter.default, *getattr(hints.get(name), "__metadata__", ())]
        for info in infos:
            if isinstance(info, OptionInfo):
                decls = [d for d in (info.param_decls or ()) if d.startswith("-")]
                flags[name] = decls[0] if decls else "--" + name.replace("_", "-")
    return flags


def check_numbers(values: dict[str, Any], flags: dict[str, str]) -> None:
    """Every number given on the command line is finite and of a sane size (the settings'
    own checks then apply their ranges); UsageError naming the option otherwise."""
    for name, value in values.items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            option = flags.get(name, name)
            if isinstance(item, float) and not math.isfinite(item):
                raise UsageError(f"{option} {item} is not a finite number")
            if isinstance(item, int) and abs(item) > MAX_OPTION_INT:
                raise UsageError(f"{option} {item} is too large")


def _as_vdir_error(exc: Exception) -> VdirError:
    if isinstance(exc, VdirError):
        return exc
    if isinstance(exc, OSError):
        mapped = from_os_error(exc)
        if mapped is not None:
            return mapped
    oom = _out_of_memory_message(exc)
    if oom:
        return ResourceError(oom)
    return VdirError(
        f"internal error: {type(exc).__name__}: {exc} "
        f"(this is a bug; set {DEBUG_ENV}=1 for the traceback)"
    )


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
    add_completion=True,
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
