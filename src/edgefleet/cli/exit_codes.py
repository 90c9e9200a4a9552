"""Stable exit codes of the ``edgefleet`` command (documented in docs/cli.md) and error printing.

No click here: ``agent run``'s resident process (``cli.agent_process``) reports its errors with it too."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

from edgefleet.protocol.errors import (
    AuthenticationError,
    ConflictError,
    EdgefleetError,
    InvalidDocumentError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
)

__all__ = ["ExitCode", "exit_code_for", "print_error"]


class ExitCode(enum.IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    INVALID_INPUT = 5
    CONFLICT = 6
    SERVER_UNREACHABLE = 7
    SERVER_BUSY = 8
    INTERRUPTED = 130


_BY_CLASS: tuple[tuple[type[EdgefleetError], ExitCode], ...] = (
    (NotFoundError, ExitCode.NOT_FOUND),
    (AuthenticationError, ExitCode.AUTH),
    (PermissionDeniedError, ExitCode.AUTH),
    (InvalidDocumentError, ExitCode.INVALID_INPUT),
    (PayloadTooLargeError, ExitCode.INVALID_INPUT),
    (ConflictError, ExitCode.CONFLICT),
    (RateLimitedError, ExitCode.SERVER_BUSY),
)


def exit_code_for(error: EdgefleetError) -> ExitCode:
    if error.code == "server_unreachable":
        return ExitCode.SERVER_UNREACHABLE
    for cls, code in _BY_CLASS:
        if isinstance(error, cls):
            return code
    if isinstance(error, ServiceUnavailableError):
        return ExitCode.SERVER_BUSY
    return ExitCode.UNEXPECTED


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def print_error(error: EdgefleetError, *, as_json: bool = False) -> None:
    """``error [code]: message`` then expected/got (and per-field problems) on stderr; with ``as_json``
    (the command was given ``--json``) also ``{"error": {"code", "message", "details"}}`` on stdout, the
    API's error body, so a script reads the failure where it reads the answer."""
    if as_json:
        print(json.dumps({"error": error.to_body()}, indent=2, sort_keys=True, default=str), flush=True)
    lines = [f"error [{error.code}]: {error.message}"]
    details = error.details
    if "expected" in details:
        lines.append(f"  expected: {_short(details['expected'])}")
    if "got" in details:
        lines.append(f"  got:      {_short(details['got'])}")
    problems = details.get("errors")
    if isinstance(problems, list):
        lines += [
            f"  - {problem.get('field', '?')}: expected {_short(problem.get('expected'))}, "
            f"got {_short(problem.get('got'))}"
            for problem in problems[:20]
            if isinstance(problem, dict)
        ]
    print("\n".join(lines), file=sys.stderr, flush=True)
