"""Getting one artifact file through a delta, on the device: choose, download, rebuild, verify.

``choose_delta`` (pure) picks, among the delta targets signed for a file, the one whose base the device
holds, by the base's sha256 (never by a version name). ``DeltaFiles.rebuild`` downloads it with the same
resumable, bounded ``Downloader`` as any target (its own signed length and sha256), rebuilds the file into the
install's staging directory (the inactive slot) with ``trust.delta.apply_delta`` (output bounded by the full
target's signed length while writing), and returns it only when it has the full target's signed sha256 and
length. Every refusal comes back as a reason code; the caller then downloads the full file and reports the
reason (``TransferReport.fallbacks``). Nothing it writes is ever current: staging becomes a version only
through the installer's verify -> stage -> switch.
"""

from __future__ import annotations

import errno
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from edgefleet.agent.install.download import Downloader
from edgefleet.agent.install.faults import CrashHook, no_crash
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.install.steps import TransferReport
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.trust.delta import apply_delta, check_delta_use
from edgefleet.trust.target_custom import DELTA_SUFFIX, DELTAS_DIR, DeltaCustom, custom_of

__all__ = ["DeltaChoice", "DeltaFiles", "TransferReport", "choose_delta", "held_files"]


@dataclass(frozen=True)
class DeltaChoice:
    target: TargetFile
    delta: DeltaCustom
    base: Path


def delta_candidates(targets: Mapping[str, TargetFile], prefix: str, file_path: str) -> list[TargetFile]:
    """The delta targets published for ``<prefix>/<file_path>`` (``<prefix>/deltas/<sha>/<file>.efdelta``)."""
    head, tail = f"{prefix}/{DELTAS_DIR}/", f"/{file_path}{DELTA_SUFFIX}"
    out = []
    for path, info in targets.items():
        if path.startswith(head) and path.endswith(tail) and "/" not in path[len(head) : -len(tail)]:
            out.append(info)
    return sorted(out, key=lambda t: t.path)


def choose_delta(
    candidates: list[TargetFile],
    held: Mapping[str, Path],
    *,
    hardware_class: str,
    result_path: str,
    sha256: str,
    length: int,
) -> tuple[DeltaChoice | None, str | None]:
    """Pure: the delta to use for the full target (``result_path``, ``sha256``, ``length``) given the files
    the device holds (sha256 -> path), or why none: ``None`` when none is published (not a fallback),
    ``delta_base_missing`` when none starts from a held file, or the first refusal's code."""
    if not candidates:
        return None, None
    refusal = "delta_base_missing"
    for info in candidates:
        try:
            custom = custom_of(info)
            if custom.delta is None or custom.hardware_class != hardware_class:
                raise InvalidDocumentError("not a delta for this class", code="delta_mismatch", got=info.path)
            check_delta_use(custom.delta, result_path=result_path, sha256=sha256, length=length)
        except EdgefleetError as exc:
            refusal = exc.code
            continue
        base = held.get(custom.delta.base_sha256)
        if base is not None:
            return DeltaChoice(info, custom.delta, base), None
    return None, refusal


def held_files(data_root: Path) -> dict[str, Path]:
    """sha256 -> path of every file of every installed version of every slot (each version's manifest
    gives the hashes; ``apply_delta`` hashes the base again before using it)."""
    held: dict[str, Path] = {}
    slots = Path(data_root) / "slots"
    if not slots.is_dir():
        return held
    for slot_dir in sorted(slots.iterdir()):
        store = SlotStore(Path(data_root), slot_dir.name)
        for key in store.versions():
            try:
                manifest = store.read_manifest(key)
            except EdgefleetError:
                continue
            for entry in manifest.files:
                path = store.files_dir(key) / entry.path
                if path.is_file():
                    held.setdefault(entry.sha256, path)
    return held


class DeltaFiles:
    def __init__(self, downloader: Downloader, scratch_dir: Path, *, crash: CrashHook = no_crash) -> None:
        self._downloader = downloader
        self._scratch = scratch_dir
        self._crash = crash

    def rebuild(self, choice: DeltaChoice, url: str, out: Path, *, keep: Collection[str]) -> str | None:
        """Download the chosen delta and rebuild ``out``; ``None`` when done, else the reason code of the
        refusal (``out`` is then absent). The delta file is removed either way once applied or refused."""
        sha256 = choice.target.hashes.get("sha256", "")
        try:
            delta = self._downloader.fetch(url, sha256=sha256, length=choice.target.length, keep=keep)
        except EdgefleetError as exc:
            return exc.code
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            point = f"delta:{out.name}"
            apply_delta(delta, choice.base, out, choice.delta, on_write=lambda: self._crash(point))
        except EdgefleetError as exc:  # DeltaRejectedError, HashMismatchError: nothing was placed
            return exc.code
        except OSError as exc:
            return "disk_full" if exc.errno == errno.ENOSPC else "io_error"
        finally:
            delta.unlink(missing_ok=True)
        return None
