"""A probe bundle: a build's candidates for one class, shaped as an artifact so it is signed like one.

``make_bundle`` writes ``BUILD_DIR/probes/<class>-<stamp>/`` with ``manifest.json`` (a valid
``ArtifactManifest`` of model ``<model>.probe``), ``probe.json`` (``ProbeIndex``), ``candidates/<name>.onnx``
and ``validation.npz``. ``edgefleet publish`` signs it into the TUF targets with the offline release key
like any artifact; the device verifies every file against those targets before running anything.

The bundle's line (``<model>.probe`` / class) is its own, so probing never moves the model's release line;
its release counter is the creation time in seconds, so every new bundle is above the previous one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.optimize.candidate_store import CANDIDATES_DIR, VALIDATION_FILE, read_index
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.package import write_bytes, write_manifest
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.manifest import ArtifactManifest
from edgefleet.protocol.probe import PROBE_INDEX_FILE, PROBE_VALIDATION_FILE, ProbeIndex

__all__ = ["MIB", "Bundle", "class_candidates", "make_bundle", "read_report"]

MIB = 1024 * 1024
PROBES_DIR = "probes"
MAX_REPORT_BYTES = 20_000_000


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: ArtifactManifest
    index: ProbeIndex
    total_bytes: int


def read_report(build_dir: Path) -> dict[str, Any]:
    path = Path(build_dir) / "report.json"
    try:
        raw = path.read_bytes()[: MAX_REPORT_BYTES + 1]
        report = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise BuildInputError(
            f"{build_dir} is not a build output", code="not_a_build", expected="report.json", got=str(exc)
        ) from exc
    if not isinstance(report, dict) or not isinstance(report.get("classes"), list):
        raise BuildInputError("report.json has no classes", code="not_a_build", expected="classes list")
    return report


def class_candidates(report: dict[str, Any], hardware_class: str) -> dict[str, Any]:
    """The build's entry for ``hardware_class``, or ``build_class_mismatch`` naming the classes it has."""
    for entry in report["classes"]:
        if isinstance(entry, dict) and entry.get("hardware_class") == hardware_class:
            return entry
    raise BuildInputError(
        f"the build was not made for class {hardware_class!r}",
        code="build_class_mismatch",
        expected=sorted(str(e.get("hardware_class")) for e in report["classes"] if isinstance(e, dict)),
        got=hardware_class,
    )


def _check_manifest_class(build_dir: Path, hardware_class: str) -> None:
    path = build_dir / hardware_class / "manifest.json"
    if not path.is_file():
        return
    manifest = ArtifactManifest.parse(json.loads(path.read_bytes()))
    if manifest.hardware_class != hardware_class:
        raise BuildInputError(
            "the build's artifact for this class names another class",
            code="build_class_mismatch",
            expected=hardware_class,
            got=manifest.hardware_class,
        )


def make_bundle(
    build_dir: Path,
    hwclass: HardwareClass,
    *,
    now: datetime,
    candidates: list[str] | None = None,
    reference: str = "fp32",
) -> Bundle:
    """Check the build against the class (nothing is written when a check fails), then write the bundle."""
    build_dir = Path(build_dir)
    report = read_report(build_dir)
    entry = class_candidates(report, hwclass.name)
    _check_manifest_class(build_dir, hwclass.name)
    index = read_index(build_dir)
    files = {c["name"]: c for c in index["candidates"] if isinstance(c, dict) and "name" in c}
    measured = [c for c in entry.get("candidates", []) if isinstance(c, dict) and not c.get("error")]
    allowed = [c["name"] for c in measured if c.get("precision") in hwclass.precisions and c["name"] in files]
    chosen = list(dict.fromkeys(candidates)) if candidates else allowed
    unknown = [n for n in chosen if n not in allowed]
    if unknown or not chosen:
        raise BuildInputError(
            "no such candidate for this class in the build",
            code="unknown_candidate",
            expected=allowed,
            got=unknown or chosen,
        )
    if reference not in chosen:
        chosen.insert(0, reference)  # agreement is judged against it on the device
        if reference not in files:
            raise BuildInputError(
                "the build kept no reference candidate", code="unknown_candidate", got=reference
            )
    source = build_dir / CANDIDATES_DIR
    sizes = {n: (source / files[n]["file"]).stat().st_size for n in chosen}
    validation_bytes = (source / VALIDATION_FILE).stat().st_size
    total = sum(sizes.values()) + validation_bytes
    budget = hwclass.budgets.storage_mb * MIB
    if total > budget:
        raise BuildInputError(
            "the probe's candidates and validation inputs do not fit the class's storage budget",
            code="probe_exceeds_storage_budget",
            expected=f"<= {hwclass.budgets.storage_mb} MiB (budgets.storage_mb)",
            got={"validation_bytes": validation_bytes, "candidate_bytes": total - validation_bytes},
        )
    stamp = int(now.timestamp())
    model = f"{index['model']}.probe"
    version = f"p{stamp}-{index['version']}"[:63]
    if len(model) > 63 or not _is_name(model) or not _is_name(version):
        raise BuildInputError("model name too long for a probe bundle", code="invalid_build_input", got=model)
    probe_index = ProbeIndex(
        model=index["model"],
        version=index["version"],
        hardware_class=hwclass.name,
        task=index.get("task", "classification"),
        judged_output=index["judged_output"],
        reference=reference,
        candidates=[
            {
                "name": n,
                "kind": str(files[n].get("kind", "")),
                "precision": str(files[n].get("precision", "fp32")),
                "file": f"{CANDIDATES_DIR}/{files[n]['file']}",
            }
            for n in chosen
        ],
    )
    out = build_dir / PROBES_DIR / f"{hwclass.name}-{stamp}"
    if out.exists():
        shutil.rmtree(out)
    for name in chosen:
        write_bytes(out / CANDIDATES_DIR / files[name]["file"], (source / files[name]["file"]).read_bytes())
    write_bytes(out / PROBE_VALIDATION_FILE, (source / VALIDATION_FILE).read_bytes())
    write_bytes(out / PROBE_INDEX_FILE, canonical_json(probe_index.to_dict()))
    rels = [PROBE_INDEX_FILE, PROBE_VALIDATION_FILE, *(c.file for c in probe_index.candidates)]
    manifest = write_manifest(
        out,
        {
            "schema_version": 1,
            "model": model,
            "version": version,
            "hardware_class": hwclass.name,
            "runtime": hwclass.runtime.model_dump(mode="json"),
            "precision": "fp32",
            "entrypoint": f"{CANDIDATES_DIR}/{files[reference]['file']}",
            "files": [_file_entry(out, rel) for rel in rels],
            "signature": index["signature"],
            "optimization": {"source_sha256": index["source_sha256"], "candidate": "probe"},
            "health_check": {
                "golden_file": PROBE_VALIDATION_FILE,
                "latency_ceiling_ms": hwclass.performance.latency_p95_ms,
            },
            "release_counter": stamp,
            "probe": {"candidates": chosen, "build_version": index["version"]},
        },
    )
    return Bundle(out, manifest, probe_index, total)


def _is_name(value: str) -> bool:
    return re.match(NAME_PATTERN, value) is not None


def _file_entry(root: Path, rel: str) -> dict[str, Any]:
    data = (root / rel).read_bytes()
    return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
