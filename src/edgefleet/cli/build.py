"""``edgefleet build MODEL.onnx --classes classes.toml --calibration DATA --validation DATA --out DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.cli.state import notes_json
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import MAX_CLASSES_FILE_BYTES, parse_classes_toml

__all__ = ["build", "build_model", "select_cmd"]


def _read_classes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
            raise InvalidDocumentError(
                "classes file too large",
                code="document_too_large",
                expected=MAX_CLASSES_FILE_BYTES,
                got=str(path),
            )
        return path.read_bytes()
    except OSError as exc:
        raise InvalidDocumentError(
            f"cannot read classes file {path}",
            code="unreadable_file",
            expected="a readable TOML file",
            got=str(exc),
        ) from exc


def _strength(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError(text)
        return name.strip(), float(value)
    except ValueError:
        raise click.BadParameter(f"expected NAME=STRENGTH (e.g. gaussian_noise=0.1), got {text!r}") from None


class _BuildGroup(click.Group):
    """``edgefleet build MODEL ...`` builds; ``edgefleet build select ...`` selects again from a probe."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, ["model", *args])

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        build_model.format_help(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(
            "Also: edgefleet build select BUILD_DIR --from-probe PROBE_ID (see --help there)."
        )


@click.group("build", cls=_BuildGroup)
def build() -> None:
    """Optimize a model per hardware class; or select again on device figures (``build select``)."""


@build.command("model", hidden=True)
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--classes", "classes_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--class", "class_names", multiple=True, help="Build only these classes (repeatable).")
@click.option("--calibration", required=True, type=click.Path(path_type=Path), help=".npz or folder of .npy")
@click.option("--validation", required=True, type=click.Path(path_type=Path), help=".npz or folder of .npy")
@click.option(
    "--task", type=click.Choice(["classification", "regression", "embedding"]), default="classification"
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "model_name", default=None, help="Model name (default: from the file name).")
@click.option("--version", "model_version", default="1", show_default=True)
@click.option("--release-counter", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--output", "output_name", default=None, help="Output to judge quality on (default: first float)."
)
@click.option("--student", "students", multiple=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--min-metric-ratio", type=click.FloatRange(0, 1), default=0.99, show_default=True)
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True)
@click.option(
    "--latency-runs", type=click.IntRange(1, 100_000), default=None, help="Timed runs per candidate."
)
@click.option(
    "--input-kind",
    type=click.Choice(["image", "signal", "tabular", "none"]),
    default="none",
    show_default=True,
    help="What the input is: the robustness check perturbs it accordingly (recorded in the manifest).",
)
@click.option(
    "--perturb",
    "perturbations",
    multiple=True,
    callback=lambda _ctx, _param, values: tuple(_strength(v) for v in values),
    help="NAME=STRENGTH overriding a default perturbation strength, e.g. gaussian_noise=0.1 (0: leave out).",
)
@click.option("--robust-min-agreement", type=click.FloatRange(0, 1), default=0.95, show_default=True)
@click.option("--robust-min-metric-ratio", type=click.FloatRange(0, 1), default=0.97, show_default=True)
@click.option("--robustness-seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--quick", is_flag=True, help="Test-size configuration: fewer candidates and runs.")
@click.option(
    "--keep-candidates", is_flag=True, help="Keep every candidate in OUT/candidates/ (to probe on devices)."
)
@click.option(
    "--no-emulate", is_flag=True, help="Do not measure each class under its limits in fresh processes."
)
@click.option(
    "--sustained-s",
    type=click.FloatRange(0, 24 * 3600),
    default=0.0,
    show_default=True,
    help="Also run each candidate under sustained load this long in the class emulation (drift, throttling).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars (they are off when not on a terminal).")
def build_model(
    model: Path,
    classes_file: Path,
    class_names: tuple[str, ...],
    calibration: Path,
    validation: Path,
    task: str,
    out: Path,
    model_name: str | None,
    model_version: str,
    release_counter: int,
    output_name: str | None,
    students: tuple[Path, ...],
    min_metric_ratio: float,
    min_agreement: float,
    latency_runs: int | None,
    input_kind: str,
    perturbations: tuple[tuple[str, float], ...],
    robust_min_agreement: float,
    robust_min_metric_ratio: float,
    robustness_seed: int,
    quick: bool,
    keep_candidates: bool,
    no_emulate: bool,
    sustained_s: float,
    no_progress: bool,
) -> None:
    """Optimize MODEL for each hardware class, measure every candidate, write one artifact per class."""
    from edgefleet.optimize import BuildConfig, BuildError, run_build
    from edgefleet.optimize.report import sustained_words
    from edgefleet.optimize.robustness_report import robustness_lines

    classes = parse_classes_toml(_read_classes(classes_file))
    settings = {
        "task": task,
        "output_name": output_name,
        "model_name": model_name,
        "model_version": model_version,
        "release_counter": release_counter,
        "students": students,
        "min_metric_ratio": min_metric_ratio,
        "min_agreement": min_agreement,
        "progress": not no_progress,
        "input_kind": input_kind,
        "perturbations": perturbations,
        "robust_min_agreement": robust_min_agreement,
        "robust_min_metric_ratio": robust_min_metric_ratio,
        "robustness_seed": robustness_seed,
        "keep_candidates": keep_candidates,
        "emulate": not no_emulate,
        "sustained_s": sustained_s,
    }
    if latency_runs is not None:
        settings["latency_runs"] = latency_runs
    config = BuildConfig.test_size(**settings) if quick else BuildConfig(**settings)  # type: ignore[arg-type]
    if model.suffix == ".tflite":  # a LiteRT model: validated, measured and packaged as it is
        from edgefleet.optimize.litert_build import build_litert
        from edgefleet.optimize.pipeline import select_classes

        lite = build_litert(
            model, select_classes(classes, list(class_names) or None), calibration, validation, out, config
        )
        for name in lite.built:
            click.echo(f"{name}: tflite-source ({lite.precision})")
        for name, why in lite.failed.items():
            click.echo(f"{name}: FAILED - {why}")
        if lite.failed:
            raise BuildError(
                "the .tflite model does not fit some classes",
                code="class_build_failed",
                expected="an artifact for every class",
                got=sorted(lite.failed),
            )
        return
    result = run_build(
        model, classes, calibration, validation, out, config, class_names=list(class_names) or None
    )
    for c in result.classes:
        status = "FAILED" if c.selection.failed else c.selection.chosen
        click.echo(f"{c.hwclass.name}: {status} - {c.selection.summary}")
        click.echo(f"  {c.note}; latency decided on: {c.selection.place or 'unmeasured here'}")
        startup = next(
            (f for f in c.figures if f.candidate == c.selection.chosen and f.load_time_ms is not None), None
        )
        if startup is not None and startup.first_inference_ms is not None:
            click.echo(
                f"  startup ({startup.where}): load {startup.load_time_ms:.1f} ms, first inference "
                f"{startup.first_inference_ms:.1f} ms - {startup.source}"
            )
        for f in c.figures:
            if f.candidate == c.selection.chosen and f.sustained is not None:
                click.echo(f"  {f.where}: {sustained_words(f.sustained.model_dump(mode='json'))}")
        if c.selection.sustained_unmeasured:
            click.echo(f"  {c.selection.sustained_unmeasured}")
    if result.robustness is not None:
        chosen = sorted({"fp32", *(c.selection.chosen for c in result.classes if c.selection.chosen)})
        for line in robustness_lines(result.robustness.to_dict(), chosen):
            click.echo(line)
        refused = sorted(
            {
                v.name
                for c in result.classes
                for v in c.selection.verdicts
                if any(r.startswith("robustness") for r in v.reasons)
            }
        )
        if refused:
            click.echo(f"  refused for robustness: {', '.join(refused)} (report.json has every figure)")
    click.echo(f"report: {out / 'report.html'}")
    if result.failed_classes:
        raise BuildError(
            "no candidate fits some classes (see report.json for the numbers that missed)",
            code="class_build_failed",
            expected="an artifact for every class",
            got=result.failed_classes,
        )


@build.command("select")
@click.argument("build_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--from-probe", "probe_id", required=True, help="The probe whose device figures decide.")
@click.option(
    "--allow-partial", is_flag=True, help="Accept a probe that ended with fewer devices than asked."
)
@click.option("--json", "as_json", is_flag=True)
@notes_json
@click.pass_context
def select_cmd(
    ctx: click.Context, build_dir: Path, probe_id: str, allow_partial: bool, as_json: bool
) -> None:
    """Select the class's candidate again on the figures devices measured, and write BUILD_DIR/<class>."""
    from edgefleet.cli.output import echo_json
    from edgefleet.cli.state import CliState
    from edgefleet.optimize.device_select import select_from_probe
    from edgefleet.optimize.errors import BuildError

    state: CliState = ctx.ensure_object(CliState)
    with state.client() as client:
        probe = client.get_probe(probe_id)
        hwclass = client.get_class(probe["hardware_class"])
    result = select_from_probe(build_dir, hwclass, probe, allow_partial=allow_partial)
    verdicts = [
        {"name": v.name, "eligible": v.eligible, "reasons": list(v.reasons)}
        for v in result.selection.verdicts
    ]
    if as_json:
        echo_json(
            {
                "hardware_class": result.hardware_class,
                "probe_id": result.probe_id,
                "partial": result.partial,
                "devices": result.devices,
                "measured_on": "device",
                "chosen": result.selection.chosen,
                "summary": result.selection.summary,
                "verdicts": verdicts,
                "candidates": result.device_rows,
                "artifact": str(result.artifact) if result.artifact else None,
            }
        )
    else:
        status = "FAILED" if result.selection.failed else result.selection.chosen
        partial = ", PARTIAL" if result.partial else ""
        click.echo(f"{result.hardware_class}: {status} - {result.selection.summary}")
        click.echo(f"  measured on {result.devices} devices by probe {result.probe_id}{partial}")
        if result.artifact is not None:
            click.echo(f"artifact: {result.artifact}")
    if result.selection.failed:
        raise BuildError(
            "no candidate fits the class on the device figures",
            code="class_build_failed",
            expected="an artifact for the class",
            got=result.hardware_class,
        )
