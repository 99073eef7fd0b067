"""The `harness` command: argument parsing and exit codes only; the work happens in `harness.commands`.

Every verb ends with one of the codes of `harness.exit_codes.ExitCode` (listed by `harness --help`). Any
error, expected (a HarnessError) or not, is one line `error: ...` on stderr and exit code 2; `--debug`
adds the traceback.
"""

from __future__ import annotations

import functools
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.config import parse_yaml
from harness.errors import ConfigError, HarnessError
from harness.exit_codes import ExitCode
from harness.extras import DISTRIBUTION, installed

Verb = Callable[..., int | None]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(error: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(error)
    if isinstance(error, HarnessError):
        message = f"{error.message}; {error.hint}" if error.hint else error.message
    else:
        # Not raised on purpose: name the exception, since its text alone may not say what went wrong.
        message = f"unexpected {type(error).__name__}: {error}" + ("" if debug else " (--debug shows the traceback)")
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(ExitCode.HARNESS_ERROR)


def _verb(function: Verb) -> Callable[..., None]:
    """Add --debug and turn the verb's return value, error or interruption into the process exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, debug: bool, **kwargs: Any) -> None:
        try:
            code = function(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as error:  # every error, expected or not, is one line and exit code 2
            _fail(error, debug)
        sys.exit(int(code or ExitCode.OK))

    return click.option("--debug", is_flag=True, help="Show full tracebacks.")(wrapper)


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE with a dotted key, e.g. target.replicas=3")
        overrides[key] = parse_yaml(raw, f"--set {key}")
    return overrides


_HELP = "\n".join(
    [
        "Scalability load tests for ML model services: will it hold its latency objectives, on how many replicas?",
        "",
        "\b",
        "Exit codes:",
        *(f"  {code.value:<4} {code.meaning}" for code in ExitCode),
    ]
)


@click.group(help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION)
def cli() -> None:
    pass


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--target", "target_kind", help="Override target.kind (local, external, docker, kubernetes).")
@click.option("--replicas", type=int, help="Override target.replicas.")
@click.option("--url", "urls", multiple=True, help="External target base URL (repeatable).")
@click.option(
    "--allow-remote",
    is_flag=True,
    default=None,
    help="Let the external target send load to URLs that are not loopback (target.allow_remote).",
)
@click.option(
    "--tls-ca-bundle",
    type=click.Path(path_type=Path),
    help="External target: PEM CA certificates that verify the https URLs (target.tls.ca_bundle).",
)
@click.option(
    "--tls-no-verify",
    is_flag=True,
    default=None,
    help="External target: do not verify the https URLs' certificates (target.tls.verify: false); the verdict says so.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Override output.dir.")
@click.option("--run-id", help="Override output.run_id.")
@click.option("--exporter-port", type=int, help="Serve the harness's live metrics on this 127.0.0.1 port.")
@click.option("--pushgateway", help="Push the final verdict figures to this Prometheus Pushgateway URL.")
@click.option("--base-image", help="Docker/Kubernetes targets: base image for the service image build.")
@click.option("--ca-bundle", type=click.Path(path_type=Path), help="CA bundle for package installs in the build.")
@click.option(
    "--registry",
    help="Kubernetes target: push the images to this registry (host[:port][/path]) with your Docker credentials "
    "and deploy them by digest (target.kubernetes.registry).",
)
@click.option("--platform", help="Build the images for this platform, e.g. linux/amd64 (build.platform).")
@click.option("--set", "sets", multiple=True, help="Override any scenario field: --set stages.0.users=8")
@click.option("--json", "json_progress", is_flag=True, help="Progress as JSON lines (for machines).")
@_verb
def run(
    scenario: Path,
    target_kind: str | None,
    replicas: int | None,
    urls: tuple[str, ...],
    allow_remote: bool | None,
    tls_ca_bundle: Path | None,
    tls_no_verify: bool | None,
    out: Path | None,
    run_id: str | None,
    exporter_port: int | None,
    pushgateway: str | None,
    base_image: str | None,
    ca_bundle: Path | None,
    registry: str | None,
    platform: str | None,
    sets: tuple[str, ...],
    json_progress: bool,
) -> int:
    """Run SCENARIO and print its verdict."""
    from harness.commands import run_scenario

    overrides = _parse_set(sets)
    for key, value in (
        ("target.kind", target_kind),
        ("target.replicas", replicas),
        ("target.urls", list(urls) or None),
        ("target.allow_remote", allow_remote),
        # Absolute: a relative path in the scenario resolves against its file, on the command line against here.
        ("target.tls.ca_bundle", None if tls_ca_bundle is None else str(tls_ca_bundle.resolve())),
        ("target.tls.verify", None if tls_no_verify is None else not tls_no_verify),
        ("output.dir", str(out) if out else None),
        ("output.run_id", run_id),
        ("metrics.exporter_port", exporter_port),
        ("metrics.pushgateway_url", pushgateway),
        ("build.base_image", base_image),
        ("build.ca_bundle", str(ca_bundle.resolve()) if ca_bundle else None),
        ("build.platform", platform),
        ("target.kubernetes.registry", registry),
    ):
        if value is not None:
            overrides[key] = value
    return run_scenario(scenario, overrides, json_progress=json_progress)


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, help="Override any scenario field: --set stages.0.users=8")
@_verb
def validate(scenario: Path, sets: tuple[str, ...]) -> None:
    """Check SCENARIO without running it: the schema, then the preflight `run` does first (files, service path,
    header variables), and warnings for stages too short for their percentile objectives."""
    from harness.config import load_scenario
    from harness.preflight import preflight, short_stage_warnings

    loaded = load_scenario(scenario, _parse_set(sets))
    preflight(loaded)
    for warning in short_stage_warnings(loaded):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{scenario}: valid ({len(loaded.stages)} stages, {loaded.duration_s:.0f} s of load)")


@cli.command()
@click.option("--docker/--no-docker", default=True, help="Also remove containers of harnesses that are gone.")
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path),
    help="Also delete cluster objects: those of harnesses of this machine that are gone, and every harness "
    "object (and namespace) whose expiry has passed, whoever made it.",
)
@click.option(
    "--namespace",
    help="With --kubeconfig: look in this namespace only (for a user whose rights are in one namespace).",
)
@_verb
def cleanup(docker: bool, kubeconfig: Path | None, namespace: str | None) -> None:
    """Remove what killed runs left: processes, cgroups, containers, cluster objects.

    Only what bears the mark of a harness of this machine that no longer runs is touched, and in a
    cluster also what any harness created that has expired (its planned end plus a margin); every
    `harness run` does the same for processes and cgroups before it starts.
    """
    from harness.cleanup import sweep_dead

    if namespace is not None and kubeconfig is None:
        raise ConfigError("--namespace applies to the cluster sweep: give --kubeconfig too")
    lines = sweep_dead(
        docker=docker and installed("docker") and _docker_reachable(),
        kubeconfig=kubeconfig,
        namespace=namespace,
        on_line=click.echo,
    )
    if not lines:
        click.echo("nothing to clean up")


def _docker_reachable() -> bool:
    import os

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return not host.startswith("unix://") or Path(host.removeprefix("unix://")).exists()


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--namespace", help="The namespace the Role grants rights in (default: target.kubernetes.namespace).")
@click.option("--name", default="harness-run", show_default=True, help="The Role's (and RoleBinding's) name.")
@click.option("--service-account", help="Also print a RoleBinding of the Role to this ServiceAccount of the namespace.")
@click.option(
    "--set", "sets", multiple=True, help="Override any scenario field: --set target.kubernetes.loadgen=in-cluster"
)
@_verb
def rbac(scenario: Path, namespace: str | None, name: str, service_account: str | None, sets: tuple[str, ...]) -> None:
    """Print the narrowest Role a Kubernetes run of SCENARIO needs: rights in one existing namespace, chosen by the
    scenario's routes and features (`kubectl apply -f -` it, then bind it)."""
    from harness.commands import rbac_manifests

    click.echo(
        rbac_manifests(scenario, _parse_set(sets), namespace=namespace, name=name, service_account=service_account),
        nl=False,
    )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_verb
def report(run_dir: Path) -> None:
    """Re-analyse RUN_DIR's raw data and re-render every report in it."""
    from harness.commands import rerender

    for path in rerender(run_dir):
        click.echo(str(path))


@cli.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--alpha", default=0.01, show_default=True, help="Significance level, between 0 and 1.")
@click.option("--min-effect", default=0.05, show_default=True, help="Smallest relative change that counts (>= 0).")
@click.option("--html", "html_out", type=click.Path(path_type=Path), help="Write a side-by-side HTML report.")
@_verb
def compare(baseline: Path, candidate: Path, alpha: float, min_effect: float, html_out: Path | None) -> int:
    """Compare two run directories; exit 1 on a statistically significant regression."""
    from harness.commands import compare_runs

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha:g}: must be between 0 and 1 (exclusive), e.g. 0.01")
    if not (math.isfinite(min_effect) and min_effect >= 0):
        raise ConfigError(f"--min-effect {min_effect:g}: must be a finite number >= 0, e.g. 0.05")
    return compare_runs(baseline, candidate, alpha=alpha, min_effect=min_effect, html_out=html_out)


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
@click.option("--set", "sets", multiple=True, help="Override any scenario field: --set stages.0.users=8")
@_verb
def sweep(
    scenario: Path,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    probe_s: float | None,
    replica_counts: tuple[int, ...],
    sets: tuple[str, ...],
) -> int:
    """Search the maximum sustainable arrival rate of SCENARIO's service under its objectives."""
    from harness.commands import sweep_scenario

    return sweep_scenario(
        scenario,
        _parse_set(sets),
        initial_rps=initial_rps,
        max_rps=max_rps,
        tolerance=tolerance,
        probe_s=probe_s,
        replica_counts=replica_counts,
    )


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--base-image", help="Base image for the container build (default: BentoML's).")
@click.option("--ca-bundle", type=click.Path(path_type=Path), help="CA bundle for package installs in the build.")
@click.option("--tag", help="Image tag (default: from the bento tag).")
@click.option("--platform", help="Build for this platform, e.g. linux/amd64 (default: build.platform, else Docker's).")
@_verb
def build(
    scenario: Path, base_image: str | None, ca_bundle: Path | None, tag: str | None, platform: str | None
) -> None:
    """Build SCENARIO's service as a bento and an OCI image; prints its tag first."""
    from harness.commands import build_image

    click.echo(build_image(scenario, base_image=base_image, ca_bundle=ca_bundle, tag=tag, platform=platform))


def main() -> None:
    """Console entry point."""
    cli()


if __name__ == "__main__":
    main()
