"""The batch's task scheduler with a stand-in executor: order, parallel edits, failures."""

from __future__ import annotations

from videodirector_cli.output import Output
from videodirector_cli.stages.batch_tasks import Task, run_tasks


class FakeExecutor:
    """Runs tasks in 'rounds': every submitted task finishes at the next collect."""

    def __init__(self, slots: int, failing: set[str] = frozenset()) -> None:
        self.slots, self.failing = slots, failing
        self.running: list[Task] = []
        self.rounds: list[list[str]] = []
        self.devices: list[str] = []

    def has_room(self) -> bool:
        return len(self.running) < self.slots

    def submit(self, task, command) -> None:
        self.devices.append(command(f"dev{len(self.running)}")[-1])
        self.running.append(task)

    def collect(self):
        finished, self.running = self.running, []
        if finished:
            self.rounds.append(sorted(f"{t.clip}:{t.step}" for t in finished))
        return [(t, "boom" if f"{t.clip}:{t.step}" in self.failing else None) for t in finished]


def _graph(clip: str, edits: int) -> dict[Task, tuple[Task, ...]]:
    t = lambda step: Task(clip, step)  # noqa: E731
    steps = {t("init"): (), t("mask"): (t("init"),), t("invert"): (t("mask"),)}
    names = [f"edit:e{i}" for i in range(edits)]
    steps.update({t(n): (t("invert"),) for n in names})
    steps[t("render")] = tuple(t(n) for n in names)
    return steps


def test_edits_of_a_clip_run_together_after_its_inversion():
    executor = FakeExecutor(slots=3)
    outcome = run_tasks(
        _graph("a", 3), executor, lambda task, dev: [task.step, dev], Output("quiet")
    )
    assert all(error is None for error in outcome.values())
    assert executor.rounds == [
        ["a:init"],
        ["a:mask"],
        ["a:invert"],
        ["a:edit:e0", "a:edit:e1", "a:edit:e2"],
        ["a:render"],
    ]
    assert {"dev0", "dev1", "dev2"} <= set(executor.devices)  # the three edits, three devices


def test_a_failed_step_skips_the_rest_of_its_clip_only():
    graph = {**_graph("a", 1), **_graph("b", 1)}
    executor = FakeExecutor(slots=2, failing={"a:invert"})
    outcome = run_tasks(graph, executor, lambda task, dev: [dev], Output("quiet"))
    assert outcome[Task("a", "invert")] == "boom"
    assert outcome[Task("a", "edit:e0")].startswith("skipped")
    assert outcome[Task("a", "render")].startswith("skipped")
    assert all(error is None for task, error in outcome.items() if task.clip == "b")
