"""The batch's steps as tasks: worker processes on local devices, or tasks on a Ray cluster.

A task is one step of one clip (init, mask, invert, edit:NAME, render, report), run as
`vdir batch PLAN --only CLIP --step STEP --devices DEV` (a worker: it runs that step in its own
process and writes no index). The scheduler starts every task whose steps before it are done
while an executor has room, so once a clip's inversion is done its edits run at the same time on
whatever devices are free. A failed task skips the rest of its clip; other clips go on.
Ray is optional (`pip install videodirector-cli[ray]`) and imported only for `--ray`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from videodirector_cli.errors import UsageError
from videodirector_cli.output import Output

WORKER_ENV = "VDIR_BATCH_WORKER"
"""Set for a worker process: it runs its step and leaves the index to the parent."""
POLL_S = 0.2


@dataclass(frozen=True)
class Task:
    clip: str
    step: str


class Executor(Protocol):
    def has_room(self) -> bool: ...

    def submit(self, task: Task, command: Callable[[str], list[str]]) -> None: ...

    def collect(self) -> list[tuple[Task, str | None]]:
        """Finished tasks, each with its error line or None; waits a little when none is."""
        ...


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class LocalExecutor:
    """One worker process per device slot (a device named twice has two slots)."""

    def __init__(self, devices: tuple[str, ...]) -> None:
        self.devices = devices
        self.running: dict[int, tuple[Task, subprocess.Popen]] = {}

    def has_room(self) -> bool:
        return len(self.running) < len(self.devices)

    def submit(self, task: Task, command: Callable[[str], list[str]]) -> None:
        slot = next(i for i in range(len(self.devices)) if i not in self.running)
        process = subprocess.Popen(
            command(self.devices[slot]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, WORKER_ENV: "1"},
        )
        self.running[slot] = (task, process)

    def collect(self) -> list[tuple[Task, str | None]]:
        finished = []
        for slot, (task, process) in list(self.running.items()):
            if process.poll() is None:
                continue
            stderr = process.stderr.read() if process.stderr else ""
            error = None if process.returncode == 0 else (_last_line(stderr) or "worker failed")
            finished.append((task, error))
            del self.running[slot]
        if not finished:
            time.sleep(POLL_S)
        return finished


def _run_command(command: list[str]) -> tuple[int, str]:
    """What a Ray task runs: the worker command, with this worker's own Python."""
    done = subprocess.run(
        [sys.executable, "-m", "videodirector_cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, WORKER_ENV: "1"},
    )
    return done.returncode, _last_line(done.stderr)


class RayExecutor:
    """Tasks on a Ray cluster: each asks for one GPU when the cluster has GPUs (Ray then sets
    CUDA_VISIBLE_DEVICES, so the worker's `cuda` is its own GPU), else one CPU. The projects
    must be on a filesystem every node sees at the same path."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--ray needs Ray, which is not installed",
                hint="pip install 'videodirector-cli[ray]'",
            ) from None
        self.ray = ray
        self.started_here = False
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                if address == "local":
                    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False)
                    self.started_here = True
                else:
                    ray.init(address=address, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError, SystemExit) as exc:
                raise UsageError(
                    f"--ray {address}: cannot join a Ray cluster there ({_last_line(str(exc))})",
                    hint="start one with `ray start --head`, or use --ray local",
                ) from None
        gpus = ray.cluster_resources().get("GPU", 0)
        self.device = "cuda" if gpus > 0 else "cpu"
        if gpus > 0:
            self.remote = ray.remote(num_gpus=1)(_run_command)
        else:
            self.remote = ray.remote(num_cpus=1)(_run_command)
        self.refs: dict[Any, Task] = {}

    def has_room(self) -> bool:
        return True  # Ray queues what the cluster cannot run yet

    def submit(self, task: Task, command: Callable[[str], list[str]]) -> None:
        ref = self.remote.remote(command(self.device)[3:])  # without "python -m videodirector_cli"
        self.refs[ref] = task

    def collect(self) -> list[tuple[Task, str | None]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=1.0)
        finished = []
        for ref in ready:
            task = self.refs.pop(ref)
            try:
                code, last = self.ray.get(ref)
                finished.append((task, None if code == 0 else (last or "worker failed")))
            except Exception as exc:  # a task that Ray itself lost (node died)
                finished.append((task, f"Ray task failed: {_last_line(str(exc))}"))
        return finished

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse HOST:PORT (or ray://HOST:PORT) at once when nothing listens there: Ray itself
    retries for minutes before it gives up."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--ray {address}: not an address", hint="use auto, local, HOST:PORT or ray://HOST:PORT"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise UsageError(
            f"--ray {address}: cannot join a Ray cluster there ({exc.strerror or exc})",
            hint="start one with `ray start --head`, or use --ray local",
        ) from None


def _bound(command: Callable[[Task, str], list[str]], task: Task) -> Callable[[str], list[str]]:
    return lambda device: command(task, device)


class StageTable:
    """The live table of each clip's step, on stderr when it is a terminal; plain lines else."""

    def __init__(self, clips: list[str], output: Output) -> None:
        self.output = output
        self.clips = clips
        self.running: dict[str, list[str]] = {clip: [] for clip in clips}
        self.last: dict[str, str] = {}
        self.live: Any = None

    def __enter__(self) -> StageTable:
        if self.output.shows_progress:
            from rich.live import Live

            self.live = Live(self._table(), console=self.output.stderr, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _cell(self, clip: str) -> str:
        running = ", ".join(f"{step} ..." for step in self.running[clip])
        return running or self.last.get(clip, "waiting")

    def _table(self) -> Any:
        from rich.table import Table

        table = Table("clip", "step")
        for clip in self.clips:
            table.add_row(clip, self._cell(clip))
        return table

    def show(self, task: Task, what: str) -> None:
        running = self.running[task.clip]
        if what == "started":
            running.append(task.step)
        else:
            if task.step in running:
                running.remove(task.step)
            self.last[task.clip] = f"{task.step} {what}"
        if self.live is not None:
            self.live.update(self._table())
        else:
            self.output.info(f"clip {task.clip}: {task.step} {what}")


def run_tasks(
    graph: dict[Task, tuple[Task, ...]],
    executor: Executor,
    command: Callable[[Task, str], list[str]],
    output: Output,
) -> dict[Task, str | None]:
    """Run every task after the tasks it waits for; a task after a failed one is skipped."""
    clips = list(dict.fromkeys(task.clip for task in graph))
    with StageTable(clips, output) as table:
        return _run(graph, executor, command, table)


def _run(
    graph: dict[Task, tuple[Task, ...]],
    executor: Executor,
    command: Callable[[Task, str], list[str]],
    table: StageTable,
) -> dict[Task, str | None]:
    pending = dict(graph)
    outcome: dict[Task, str | None] = {}
    running: set[Task] = set()
    while pending or running:
        progressed = False
        for task, before in list(pending.items()):
            failed = [b for b in before if b in outcome and outcome[b] is not None]
            if failed:
                outcome[task] = f"skipped: {failed[0].step} failed"
                del pending[task]
                progressed = True
        ready = [
            t for t, before in pending.items() if all(outcome.get(b, 1) is None for b in before)
        ]
        for task in ready:
            if not executor.has_room():
                break
            table.show(task, "started")
            executor.submit(task, _bound(command, task))
            running.add(task)
            del pending[task]
            progressed = True
        for task, error in executor.collect():
            running.discard(task)
            outcome[task] = error
            progressed = True
            table.show(task, "done" if error is None else "failed")
        if not progressed and not running:
            waiting = ", ".join(f"{t.clip}:{t.step}" for t in pending)
            raise RuntimeError(f"batch tasks wait for tasks that never run: {waiting}")
    return outcome
