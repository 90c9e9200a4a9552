"""``agent run``'s resident process: the agent, once its command line has been parsed.

``edgefleet agent run`` parses and checks its options with click (``cli.agent_cmd``), then replaces itself
(``os.execv``: the same process id, so a service manager still watches one process) with::

    python -m edgefleet.cli.agent_process --options-json '{"data_dir": ..., "poll_interval_s": ...}'

so the process that runs for months holds neither click nor the command tree (~1 MiB resident on the build
host, the CLI layer of ``bench/serving.py``). This module imports no click: errors are printed and mapped to
the command's stable exit codes by ``cli.exit_codes``. The environment is inherited; interpreter options
(``-X``, ``-W``) given to the first process are not carried over.

The agent's own interpreter runs lean (``interpreter_flags``): ``-OO`` drops docstrings and asserts and
``-X no_debug_ranges`` the column tables of code objects, ~2.8 MiB resident on the build host; the agent
reads no docstring and checks nothing with ``assert`` (type narrowing only). Bytecode without docstrings
is cached apart from the usual ``.pyc`` files, under ``<data-dir>/pycache`` (``-X pycache_prefix``; a
read-only install still gets a cache, and the second start reads it instead of compiling: compiling ~400
modules at start-up costs ~0.1 s and leaves ~1 MiB of heap behind on the build host). The cache is emptied
when the interpreter or edgefleet changes, and filled before the agent starts (``prepare_pycache``: the
agent writing it itself would keep ~2 MiB more); ``PYTHONDONTWRITEBYTECODE`` still stops it being written.
``EDGEFLEET_AGENT_CODE=full`` runs the agent as the interpreter normally runs (a third-party runtime that
needs its docstrings, full tracebacks).
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import msgspec

from edgefleet import __version__
from edgefleet.cli.exit_codes import ExitCode, exit_code_for, print_error
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError

__all__ = [
    "CODE_ENV",
    "LOG_LEVELS",
    "MODULE",
    "OPTIONS_FLAG",
    "PYCACHE_DIR",
    "WARM_IMPORTS",
    "command",
    "interpreter_flags",
    "main",
    "prepare_pycache",
    "replace_process",
    "run",
    "warm_pycache",
]

MODULE = "edgefleet.cli.agent_process"
OPTIONS_FLAG = "--options-json"
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevel)
CODE_ENV = "EDGEFLEET_AGENT_CODE"
PYCACHE_DIR = "pycache"
_LEAN_FLAGS = ("-OO", "-X", "no_debug_ranges")
_CODE_CHOICES = ("lean", "full")
WARM_IMPORTS = (
    "edgefleet.cli.agent_process",
    "edgefleet.agent.app",
    "edgefleet.agent.sync",
    "edgefleet.agent.hints",
    "edgefleet.agent.host_inventory",
    "edgefleet.agent.probe.runner",
    "edgefleet.agent.sha256_choice",
    "edgefleet.trust.director",
    "edgefleet.agent.runtime.ort",
    "edgefleet.agent.runtime.openvino_native",
    "edgefleet.agent.runtime.litert",
    "ssl",
    "zipfile",
    "zoneinfo",
)
"""What the agent imports at start and in its first minutes, its runtimes included (each where installed)."""


def interpreter_flags(environ: Mapping[str, str], data_dir: Path) -> tuple[str, ...]:
    """The interpreter options of the agent's process: ``lean`` (the default; its bytecode cached under
    ``data_dir``) or ``full`` (none), chosen by :data:`CODE_ENV`; anything else is
    ``invalid_agent_code_choice``, before the agent starts."""
    choice = environ.get(CODE_ENV) or "lean"
    if choice not in _CODE_CHOICES:
        raise InvalidDocumentError(
            f"{CODE_ENV} names no way to run the agent's code",
            code="invalid_agent_code_choice",
            expected=f"lean ({' '.join(_LEAN_FLAGS)}), full (as the interpreter runs by default), or unset",
            got=choice[:80],
        )
    if choice == "full":
        return ()
    return (*_LEAN_FLAGS, "-X", f"pycache_prefix={data_dir.absolute() / PYCACHE_DIR}")


def prepare_pycache(directory: Path, stamp: str, warm: Callable[[], bool]) -> str:
    """Keep ``directory`` (the lean bytecode cache) when it was warmed under ``stamp`` (this interpreter and
    edgefleet); otherwise empty it (bytecode of sources that moved would stay forever) and ``warm`` it, and
    stamp it once warmed. Returns what was done. Best effort: a cache that cannot be written is no cache, the
    agent compiles at start; one that was not warmed is tried again at the next start."""
    import shutil  # the first process's only: the agent's own would hold it for nothing

    stamp_path = directory / "STAMP"
    try:
        if stamp_path.read_text() == stamp:
            return "kept"
    except (OSError, ValueError):
        pass
    shutil.rmtree(directory, ignore_errors=True)
    try:
        directory.mkdir(mode=0o700)
        if not warm():
            return "not warmed"
        stamp_path.write_text(stamp)
    except OSError:
        return "not writable"
    return "warmed"


def warm_pycache(flags: tuple[str, ...], environ: Mapping[str, str], timeout_s: float = 120.0) -> bool:
    """Fill a new cache from a child interpreter with the agent's ``flags``, importing :data:`WARM_IMPORTS`
    (those installed): the agent then reads its bytecode instead of compiling and writing it, which leaves
    ~2 MiB more in its heap for as long as it runs (until the next start). True when the child succeeded."""
    import subprocess  # the first process's only

    if environ.get("PYTHONDONTWRITEBYTECODE"):
        return False  # nothing would be written
    code = (
        "import importlib\n"
        f"for name in {WARM_IMPORTS!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass  # a runtime this device does not have, or one that fails: the agent says so\n"
    )
    try:
        done = subprocess.run(  # our own interpreter and code
            [sys.executable, *flags, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(environ),
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def command(params: Mapping[str, Any], flags: tuple[str, ...] = ()) -> list[str]:
    """The command line that runs the agent with ``params``, the keyword arguments of :func:`run`, under the
    interpreter options ``flags`` (:func:`interpreter_flags`)."""
    plain = {key: str(value) if isinstance(value, Path) else value for key, value in params.items()}
    return [sys.executable, *flags, "-m", MODULE, OPTIONS_FLAG, json.dumps(plain, sort_keys=True)]


def replace_process(params: Mapping[str, Any]) -> NoReturn:
    """Become the agent: exec :data:`MODULE` with ``params`` (what ``agent run`` parsed)."""
    data_dir = Path(params["data_dir"])
    flags = interpreter_flags(os.environ, data_dir)
    if flags and data_dir.is_dir():  # a missing data dir is the agent's error to report, not made here
        stamp = f"{sys.version} {sys.executable} edgefleet {__version__}"
        prepare_pycache(data_dir / PYCACHE_DIR, stamp, lambda: warm_pycache(flags, os.environ))
    argv = command(params, flags)
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
