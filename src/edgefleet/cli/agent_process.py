"""``agent run``'s resident process: the agent, once its command line has been parsed.

``edgefleet agent run`` parses and checks its options with click (``cli.agent_cmd``), then replaces itself
(``os.execv``: the same process id, so a service manager still watches one process) with::

    python -m edgefleet.cli.agent_process --options-json '{"data_dir": ..., "poll_interval_s": ...}'

so the process that runs for months holds neither click nor the command tree (~1 MiB resident on the build
host, the CLI layer of ``bench/serving.py``). This module imports no click: errors are printed and mapped to
the command's stable exit codes by ``cli.exit_codes``. The environment is inherited; interpreter options
(``-X``, ``-W``) given to the first process are not carried over.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import msgspec

from edgefleet.cli.exit_codes import ExitCode, exit_code_for, print_error
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["LOG_LEVELS", "MODULE", "OPTIONS_FLAG", "command", "main", "replace_process", "run"]

MODULE = "edgefleet.cli.agent_process"
OPTIONS_FLAG = "--options-json"
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevel)


def command(params: Mapping[str, Any]) -> list[str]:
    """The command line that runs the agent with ``params``, the keyword arguments of :func:`run`."""
    plain = {key: str(value) if isinstance(value, Path) else value for key, value in params.items()}
    return [sys.executable, "-m", MODULE, OPTIONS_FLAG, json.dumps(plain, sort_keys=True)]


def replace_process(params: Mapping[str, Any]) -> NoReturn:
    """Become the agent: exec :data:`MODULE` with ``params`` (what ``agent run`` parsed)."""
    argv = command(params)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # noqa: S606  # our own interpreter and module, no shell


def run(
    *,
    data_dir: str,
    poll_interval_s: float,
    backoff_cap_s: float,
    window_s: float,
    upload_s: float,
    serve_port: int,
    serve_socket: str | None,
    no_serve: bool,
    fallback_dir: str | None,
    shadow_fraction: float,
    trial_window_s: float,
    trial_min_requests: int,
    trial_max_failure_rate: float,
    trial_min_requests_for_rate: int,
    trial_max_restarts: int,
    trial_watchdog_s: float,
    no_trial_worker: bool,
    no_hints: bool,
    time_zone: str | None,
    log_level: LogLevel,
) -> None:
    """Run the device until SIGTERM/SIGINT: sync, verify, install, serve, report, send telemetry."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("edgefleet.agent").info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    # Before the heavy imports: a SIGTERM during start-up still stops the agent cleanly.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from edgefleet.agent.malloc_arenas import cap_malloc_arenas
    from edgefleet.agent.sha256_choice import choose_sha256

    sha256 = choose_sha256(Path(data_dir), os.environ, sys.modules)  # before anything imports hashlib
    arenas = cap_malloc_arenas(os.environ)  # no thread yet
    logging.getLogger("edgefleet.agent").info("event=start %s; %s", arenas, sha256)
    from edgefleet.agent.app import AgentApp, AgentOptions
    from edgefleet.agent.install.trial import TrialPolicy
    from edgefleet.protocol.update_window import check_zone

    if time_zone:
        check_zone(time_zone)  # an operator's typo is an error (invalid_time_zone), not a silent UTC
    trial = TrialPolicy(  # validated here: a bad value is a clear error before anything starts
        window_s=trial_window_s,
        min_requests=trial_min_requests,
        max_failure_rate=trial_max_failure_rate,
        min_requests_for_rate=trial_min_requests_for_rate,
        max_restarts=trial_max_restarts,
        watchdog_s=trial_watchdog_s or None,
    )
    options = AgentOptions(
        poll_interval_s=poll_interval_s,
        backoff_cap_s=backoff_cap_s,
        telemetry_window_s=window_s,
        telemetry_upload_interval_s=upload_s,
        serve=not no_serve,
        hints=not no_hints,
        serve_port=serve_port,
        serve_socket=None if serve_socket is None else Path(serve_socket),
        fallback_dir=None if fallback_dir is None else Path(fallback_dir),
        shadow_fraction=shadow_fraction,
        trial=trial,
        trial_worker=not no_trial_worker,
        time_zone=time_zone,
        log_level=log_level,
    )
    AgentApp(Path(data_dir), options).run(stop)


@functools.cache
def _options_type() -> type[msgspec.Struct]:
    """run()'s keyword arguments as a struct, to check a command line against (names, types, choices)."""
    hints = typing.get_type_hints(run)
    fields = [(name, hint) for name, hint in hints.items() if name != "return"]
    return msgspec.defstruct("AgentRunOptions", fields, forbid_unknown_fields=True)


def _usage(message: str) -> int:
    print(f"error [usage]: {message}", file=sys.stderr, flush=True)
    expected = f"{MODULE} {OPTIONS_FLAG} '{{...}}' (started by `edgefleet agent run`)"
    print(f"  expected: {expected}", file=sys.stderr)
    return int(ExitCode.USAGE)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != OPTIONS_FLAG:
        return _usage(f"got {len(args)} arguments")
    try:
        params = json.loads(args[1])
    except ValueError as exc:
        return _usage(f"the options are not JSON: {exc}")
    if not isinstance(params, dict):
        return _usage(f"the options are a JSON {type(params).__name__}, not an object")
    try:  # names, types and choices as run() declares them: a hand-made command line gets no traceback
        options = msgspec.structs.asdict(msgspec.convert(params, _options_type()))
    except msgspec.ValidationError as exc:
        return _usage(f"the options do not fit `agent run`'s: {exc}")
    try:
        run(**options)
    except EdgefleetError as exc:
        print_error(exc)
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
