"""``edgefleet demo``: the quickstart (see ``edgefleet.quickstart.demo``)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

__all__ = ["demo"]


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".edgefleet-demo"),
    show_default=True,
    help="Where the server, agents, builds and logs live (the trained model is cached here).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the server, agents and dashboard running until Ctrl-C or SIGTERM; print their URLs.",
)
@click.option("--fast", is_flag=True, help="Fewer agents, shorter soaks, quick builds (what the tests run).")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None)
def demo(workdir: Path, keep: bool, fast: bool, summary_json: Path | None) -> None:
    """Run the whole main job on this machine: build, sign, enroll, roll out, halt a bad model, observe."""
    from edgefleet.quickstart.demo import DemoOptions, run_demo

    def _interrupted(signum: int, _frame: FrameType | None) -> None:
        # Turn SIGTERM into an exception so run_demo's clean-up stops the server and agents it started
        # (they run in their own sessions and would otherwise outlive a killed demo).
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _interrupted)
    summary = run_demo(
        DemoOptions(workdir=workdir.resolve(), keep=keep, fast=fast, summary_json=summary_json)
    )
    if summary.get("processes_left"):
        raise click.ClickException(f"processes left running: {summary['processes_left']}")
    click.echo("demo finished: 1.0.0 served everywhere, 2.0.0 halted and rolled back", err=True)
