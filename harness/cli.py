"""The `harness` command: argument parsing and exit codes only; the work happens in `harness.run`.

Exit codes: 0 every objective PASS (or WARN), 1 an objective FAILed or `compare` found a
regression, 2 harness error (bad scenario, deploy/build/load failure), 3 INCONCLUSIVE (the run
could not prove PASS or FAIL: too few samples, load generator saturated, replicas crashed),
130 interrupted (Ctrl-C / SIGTERM; what was collected is kept).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from harness.errors import ConfigError, HarnessError

EXIT_HARNESS_ERROR = 2
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


def _fail(error: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(error)
    message = str(error)
    if isinstance(error, HarnessError) and error.hint:
        message = f"{error.message}; {error.hint}"
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_HARNESS_ERROR)


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE with a dotted key, e.g. target.replicas=3")
        overrides[key] = yaml.safe_load(raw)
    return overrides


def _debug_option(function: F) -> F:
    return click.option("--debug", is_flag=True, help="Show full tracebacks.")(function)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harness")
def cli() -> None:
    """Scalability load tests for ML model services: will it hold its latency objectives, on how many replicas?"""


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--target", "target_kind", help="Override target.kind (local, external, docker, kubernetes).")
@click.option("--replicas", type=int, help="Override target.replicas.")
@click.option("--url", "urls", multiple=True, help="External target base URL (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Override output.dir.")
@click.option("--run-id", help="Override output.run_id.")
@click.option("--exporter-port", type=int, help="Serve the harness's live metrics on this 127.0.0.1 port.")
@click.option("--pushgateway", help="Push the final verdict figures to this Prometheus Pushgateway URL.")
@click.option("--base-image", help="Docker/Kubernetes targets: base image for the service image build.")
@click.option("--ca-bundle", type=click.Path(path_type=Path), help="CA bundle for package installs in the build.")
@click.option("--set", "sets", multiple=True, help="Override any scenario field: --set stages.0.users=8")
@click.option("--json", "json_progress", is_flag=True, help="Progress as JSON lines (for machines).")
@_debug_option
def run(
    scenario: Path,
    target_kind: str | None,
    replicas: int | None,
    urls: tuple[str, ...],
    out: Path | None,
    run_id: str | None,
    exporter_port: int | None,
    pushgateway: str | None,
    base_image: str | None,
    ca_bundle: Path | None,
    sets: tuple[str, ...],
    json_progress: bool,
    debug: bool,
) -> None:
    """Run SCENARIO and print its verdict."""
    from harness.run import run_scenario

    try:
        overrides = _parse_set(sets)
        for key, value in (
            ("target.kind", target_kind),
            ("target.replicas", replicas),
            ("target.urls", list(urls) or None),
            ("output.dir", str(out) if out else None),
            ("output.run_id", run_id),
            ("metrics.exporter_port", exporter_port),
            ("metrics.pushgateway_url", pushgateway),
            ("build.base_image", base_image),
            ("build.ca_bundle", str(ca_bundle.resolve()) if ca_bundle else None),
        ):
            if value is not None:
                overrides[key] = value
        code = run_scenario(scenario, overrides, json_progress=json_progress)
    except HarnessError as error:
        _fail(error, debug)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code)


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, help="Override any scenario field.")
@_debug_option
def validate(scenario: Path, sets: tuple[str, ...], debug: bool) -> None:
    """Check SCENARIO without running it."""
    from harness.config import load_scenario

    try:
        loaded = load_scenario(scenario, _parse_set(sets))
    except HarnessError as error:
        _fail(error, debug)
    click.echo(f"{scenario}: valid ({len(loaded.stages)} stages, {loaded.duration_s:.0f} s of load)")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_debug_option
def report(run_dir: Path, debug: bool) -> None:
    """Re-analyse RUN_DIR's raw data and re-render every report in it."""
    from harness.run import rerender

    try:
        paths = rerender(run_dir)
    except HarnessError as error:
        _fail(error, debug)
    for path in paths:
        click.echo(str(path))


@cli.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--alpha", default=0.01, show_default=True, help="Significance level.")
@click.option("--min-effect", default=0.05, show_default=True, help="Smallest relative change that counts.")
@click.option("--html", "html_out", type=click.Path(path_type=Path), help="Write a side-by-side HTML report.")
@_debug_option
def compare(
    baseline: Path, candidate: Path, alpha: float, min_effect: float, html_out: Path | None, debug: bool
) -> None:
    """Compare two run directories; exit 1 on a statistically significant regression."""
    from harness.run import compare_runs

    try:
        code = compare_runs(baseline, candidate, alpha=alpha, min_effect=min_effect, html_out=html_out)
    except HarnessError as error:
        _fail(error, debug)
    sys.exit(code)


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--initial-rps", type=float, default=10.0, show_default=True)
@click.option("--max-rps", type=float, default=2000.0, show_default=True)
@click.option("--tolerance", type=float, default=0.05, show_default=True, help="Stop when the bracket is this tight.")
@click.option("--probe-s", type=float, help="Minimum probe duration (default: long enough for the percentiles).")
@click.option(
    "--replicas",
    "replica_counts",
    type=int,
    multiple=True,
    help="Search at each replica count (repeatable); with 1 and more, reports the scaling efficiency.",
)
@click.option("--set", "sets", multiple=True, help="Override any scenario field.")
@_debug_option
def sweep(
    scenario: Path,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    probe_s: float | None,
    replica_counts: tuple[int, ...],
    sets: tuple[str, ...],
    debug: bool,
) -> None:
    """Search the maximum sustainable arrival rate of SCENARIO's service under its objectives."""
    from harness.run import sweep_scenario

    try:
        code = sweep_scenario(
            scenario,
            _parse_set(sets),
            initial_rps=initial_rps,
            max_rps=max_rps,
            tolerance=tolerance,
            probe_s=probe_s,
            replica_counts=replica_counts,
        )
    except HarnessError as error:
        _fail(error, debug)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code)


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--base-image", help="Base image for the container build (default: BentoML's).")
@click.option("--ca-bundle", type=click.Path(path_type=Path), help="CA bundle for package installs in the build.")
@click.option("--tag", help="Image tag (default: from the bento tag).")
@_debug_option
def build(scenario: Path, base_image: str | None, ca_bundle: Path | None, tag: str | None, debug: bool) -> None:
    """Build SCENARIO's service as a bento and an OCI image."""
    from harness.run import build_image

    try:
        click.echo(build_image(scenario, base_image=base_image, ca_bundle=ca_bundle, tag=tag))
    except HarnessError as error:
        _fail(error, debug)


def main() -> None:
    """Console entry point."""
    cli()


if __name__ == "__main__":
    main()
