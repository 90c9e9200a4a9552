"""``edgefleet tuf status|export``: the image repository as the control plane serves it, and a plain-file
copy of it for a static host or CDN (``edgefleet.client.tuf_mirror``)."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.cli.output import echo_json
from edgefleet.cli.state import CliState, pass_state
from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["tuf"]


@click.group("tuf")
def tuf() -> None:
    """The TUF image repository: status, and export for a static host or CDN."""


@tuf.command("status")
@pass_state
def status_cmd(state: CliState) -> None:
    """Root and targets versions and the timestamp's expiry."""
    with state.client() as client:
        echo_json(client.tuf_status())


@tuf.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_state
def export_cmd(state: CliState, directory: Path, as_json: bool) -> None:
    """Write the repository into DIRECTORY as plain files (metadata/, targets/) for any static host.

    Incremental: files already there are kept; new ones are written first and timestamp.json last, so the
    host never serves a timestamp naming a missing file. Run it on a timer (the timestamp expires in a
    day). Devices use it when enrolled with --content-url (or the server's EDGEFLEET_CONTENT_BASE_URL).
    """
    from edgefleet.client.tuf_mirror import export_repository

    with state.client(need_token=False) as client:
        try:
            result = export_repository(client, directory)
        except OSError as exc:  # a read-only or missing parent, a full disk: an error line, not a traceback
            raise InvalidDocumentError(
                f"cannot write the export into {directory}: {exc.strerror or exc}",
                code="directory_unwritable",
                expected="a directory this user can create and write",
                got=str(exc.filename or directory),
            ) from exc
    if as_json:
        echo_json(
            {
                "directory": str(directory),
                "root_version": result.root_version,
                "snapshot_version": result.snapshot_version,
                "targets_version": result.targets_version,
                "written": result.written,
                "kept": result.kept,
            }
        )
        return
    click.echo(
        f"exported root v{result.root_version}, targets v{result.targets_version}, snapshot "
        f"v{result.snapshot_version} to {directory}: {len(result.written)} file(s) written, "
        f"{result.kept} kept"
    )
