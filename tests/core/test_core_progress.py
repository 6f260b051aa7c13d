"""Progress in a log file: plain lines now and then, none on a terminal."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from uterosynth.core.progress import LoggedProgress, progress_line


def _run(*, terminal: bool, interval_s: float, steps: int = 5) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120)
    with LoggedProgress(console=console, interval_s=interval_s, transient=True) as progress:
        task = progress.add_task("[bold]train", total=steps, info="")
        for step in range(steps):
            progress.update(task, advance=1, info=f"loss={1 / (step + 1):.3g}")
    return "\n".join(line for line in out.getvalue().splitlines() if line)  # the bar leaves an empty line


def test_log_file_gets_a_line_per_interval_and_one_at_the_end():
    every = _run(terminal=False, interval_s=0.0).splitlines()
    assert every == [f"train: {i}/5 ({20 * i} %) after 0 s · loss={1 / i:.3g}" for i in range(1, 6)]
    rare = _run(terminal=False, interval_s=3600.0).splitlines()
    assert rare == ["train: 5/5 (100 %) after 0 s · loss=0.2"]  # only the completion


def test_a_task_without_a_total_gets_a_last_line_when_the_display_stops():
    out = io.StringIO()
    with LoggedProgress(console=Console(file=out, force_terminal=False), interval_s=3600.0, transient=True) as progress:
        task = progress.add_task("couplings", total=None)
        progress.update(task, completed=90)
    assert [line for line in out.getvalue().splitlines() if line] == ["couplings: 90 after 0 s"]


def test_lines_are_spaced_by_the_interval():
    now = [0.0]
    out = io.StringIO()
    progress = LoggedProgress(console=Console(file=out, force_terminal=False), interval_s=25.0, auto_refresh=False,
                              get_time=lambda: now[0])
    task = progress.add_task("train", total=100, start=False)
    progress.start_task(task)
    for _ in range(12):
        now[0] += 10.0  # one step every 10 s: a line at 30, 60, 90 and 120 s
        progress.advance(task)
    lines = [line for line in out.getvalue().splitlines() if line]
    assert [line.split(" after ")[1] for line in lines] == ["30 s", "1 min 0 s", "1 min 30 s", "2 min 0 s"]


def test_terminal_gets_the_live_bar_only():
    assert "train: " not in _run(terminal=True, interval_s=0.0)


def test_progress_line_without_a_total_counts_only():
    assert progress_line("couplings", 64, None, 125.4) == "couplings: 64 after 2 min 5 s"
    assert progress_line("couplings", 64, 128, 5) == "couplings: 64/128 (50 %) after 5 s"


def test_command_line_progress_reaches_a_log_file(tmp_path):
    log = tmp_path / "phantom.log"
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-m", "uterosynth", "phantom", "--out", str(tmp_path / "ph"), "--subjects", "2",
                        "--set", "geometry.matrix=[48,48]", "--set", "geometry.slices=8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=err)
    assert "phantom: 2/2 (100 %)" in log.read_text()


def test_failed_work_ends_with_its_error_not_a_progress_line():
    out = io.StringIO()
    try:
        with LoggedProgress(console=Console(file=out, force_terminal=False), interval_s=3600.0, transient=True) as bar:
            task = bar.add_task("prepare", total=3)
            bar.advance(task)
            raise ValueError("subject 2 is broken")
    except ValueError:
        pass
    assert not out.getvalue().strip()  # the command prints its one error line after this


def test_a_training_run_that_fails_prints_no_last_progress_line(tmp_path, capfd):
    """The training loop closes its bar as failed when a step raises, so the error stays the last line."""
    from uterosynth.training.loop import _Progress

    bar = _Progress(True, total=10, start=0)
    bar.advance({"loss": 1.0})
    bar.close(failed=True)
    assert "train: " not in capfd.readouterr().err
    bar = _Progress(True, total=10, start=0)
    bar.advance({"loss": 1.0})
    bar.close()  # work that ended early, not failed: its last count is logged
    assert "train: 1/10 (10 %)" in capfd.readouterr().err
