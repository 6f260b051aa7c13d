"""Progress of long work: a live bar on a terminal, a plain line now and then in a log file.

rich draws its bar only on a terminal; written to a file (a batch job's log, ``nohup``) it shows
nothing until the work ends. :class:`LoggedProgress` is a rich ``Progress`` that, when its console
is not a terminal, also prints one line per task at most every ``interval_s`` seconds, when the
task completes and when the display stops, so a log shows how far a two-hour run has come.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

__all__ = ["LoggedProgress", "progress_line"]


def progress_line(description: str, completed: float, total: float | None, elapsed_s: float) -> str:
    """``train: 120/1000 (12 %) after 1 min 30 s`` (no share when the total is unknown)."""
    minutes, seconds = divmod(round(elapsed_s), 60)
    after = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    if not total:
        return f"{description}: {completed:g} after {after}"
    return f"{description}: {completed:g}/{total:g} ({100 * completed / total:.0f} %) after {after}"


class LoggedProgress(Progress):
    """A rich ``Progress`` that also logs plain lines when its console is not a terminal."""

    def __init__(self, *columns: Any, console: Console, interval_s: float = 30.0, **kwargs: Any):
        super().__init__(*columns, console=console, **kwargs)
        self.interval_s = interval_s
        self._logged: dict[TaskID, tuple[float, float]] = {}  # task -> (time, completed) of its last line

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def stop(self, *, failed: bool = False) -> None:
        """Stop the display; in a log file, one last line for every task whose count moved since its
        last line (a task with no total, or work that ended early), unless the work ``failed``: then
        the error is the one line to read."""
        if not failed:
            for task_id in list(self._tasks):
                self._log(task_id, final=True)
        super().stop()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(failed=exc_type is not None)

    def _log(self, task_id: TaskID, *, final: bool = False) -> None:
        if self.disable or self.console.is_terminal or os.environ.get("RANK", "0") != "0":  # rank 0 speaks for all
            return
        task = self._tasks[task_id]
        now = self.get_time()  # rich's clock (task.start_time uses it too)
        if task_id not in self._logged:  # the first interval runs from the task's start (or from now, not started)
            self._logged[task_id] = (task.start_time if task.start_time is not None else now, -1.0)
        last_time, last_done = self._logged[task_id]
        finished = task.total is not None and task.completed >= task.total
        if task.completed == last_done or not task.completed:  # nothing new, or nothing done yet
            return
        if not (final or finished or now - last_time >= self.interval_s):
            return
        self._logged[task_id] = (now, task.completed)
        line = progress_line(task.description.replace("[bold]", ""), task.completed, task.total, task.elapsed or 0.0)
        info = task.fields.get("info")
        self.console.print(f"{line} · {info}" if info else line, markup=False, highlight=False, soft_wrap=True)
