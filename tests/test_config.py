"""Scenario validation: every checked-in scenario loads; mistakes give one line naming the field."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import Scenario, dump_scenario, load_scenario, parse_scenario
from harness.errors import ConfigError
from harness.redact import REDACTED

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "loadtests").glob("*.yaml"))


def in_cluster(**kubernetes: Any) -> dict[str, Any]:
    return {"kind": "kubernetes", "kubernetes": {"loadgen": "in-cluster", **kubernetes}}


def minimal() -> dict[str, Any]:
    return {
        "name": "t",
        "service": {"path": ".", "service": "service:S"},
        "stages": [{"name": "a", "duration_s": 5, "users": 1}],
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_checked_in_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.stages
    assert scenario.service.path.is_dir(), "service.path resolves relative to the scenario file"


def test_checked_in_scenarios_exist() -> None:
    assert ROOT / "loadtests" / "default.yaml" in SCENARIOS


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["stages"][0].update(duration_s=-1), "stages[0].duration_s"),
        (lambda d: d["stages"][0].update(users=None), "needs exactly one of users"),
        (lambda d: d["stages"][0].update(arrival_rate_rps=5), "needs exactly one of users"),
        (lambda d: d.update(targt={}), "unknown key 'targt'"),
        (lambda d: d.update(target={"kind": "moon"}), "target.kind"),
        (lambda d: d.update(objectives=[{"metric": "latency_p95", "max": 1}]), "not an objective metric"),
        (lambda d: d.update(objectives=[{"metric": "error_rate"}]), "exactly one of max or min"),
        (lambda d: d.update(objectives=[{"metric": "error_rate", "max": 1, "stages": ["zz"]}]), "stage 'zz'"),
        (lambda d: d.update(resources={"requests": {"cpu": "lots"}}), "not a Kubernetes quantity"),
        (lambda d: d.update(target={"kind": "external"}), "needs target.urls"),
        (lambda d: d.update(target={"kind": "external", "urls": ["http://10.0.0.1:3000"]}), "loopback"),
        (lambda d: d["stages"].append(dict(d["stages"][0])), "repeated: a"),
        (lambda d: d.pop("service"), "service.path is required: target.kind 'local' serves a BentoML project"),
        (lambda d: d["service"].pop("service"), "service.service is required"),
        (
            lambda d: d.update(
                autoscaling={
                    "minReplicas": 3,
                    "maxReplicas": 2,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                        }
                    ],
                }
            ),
            "maxReplicas (2) is below minReplicas (3)",
        ),
        (
            lambda d: d.update(autoscaling={"metrics": [{"type": "Pods"}]}),
            "needs a pods: section",
        ),
        (lambda d: d.update(objectives=[{"metric": "error_rate", "max": float("nan")}]), "objectives[0].max"),
        (lambda d: d.update(objectives=[{"metric": "throughput_rps", "min": float("-inf")}]), "finite number"),
        (lambda d: d["stages"][0].update(duration_s=float("inf")), "stages[0].duration_s"),
        (lambda d: d["stages"][0].update(users=None, arrival_rate_rps=float("nan")), "stages[0].arrival_rate_rps"),
        (lambda d: d.update(load={"request_timeout_s": float("inf")}), "load.request_timeout_s"),
        (lambda d: d.update(target={"startup_timeout_s": float("nan")}), "target.startup_timeout_s"),
        (lambda d: d.update(metrics={"interval_s": float("nan")}), "metrics.interval_s"),
        (lambda d: d.update(validity={"confidence": float("nan")}), "validity.confidence"),
        (lambda d: d.update(resources={"requests": {"cpu": -1}}), "resources.requests.cpu"),
        (lambda d: d.update(resources={"limits": {"memory": -512.0}}), "resources.limits.memory"),
        (lambda d: d.update(resources={"limits": {"cpu": float("inf")}}), "resources.limits.cpu"),
        (lambda d: d.update(resources={"requests": {"memory": "-1Gi"}}), "not a Kubernetes quantity"),
        (lambda d: d.update(load={"cpus": [-1]}), "load.cpus[0]"),
        (lambda d: d.update(load={"cpus": [0, 0]}), "must be distinct"),
        (lambda d: d.update(name="../escape"), "field 'name' = '../escape'"),
        (lambda d: d.update(name="a/b"), "field 'name'"),
        (lambda d: d.update(name=".."), "not start with '.'"),
        (lambda d: d.update(name=".hidden"), "not start with '.'"),
        (lambda d: d.update(name="x" * 101), "field 'name'"),
        (lambda d: d.update(output={"run_id": "../../tmp/x"}), "field 'output.run_id'"),
        (lambda d: d.update(output={"run_id": "a\\b"}), "output.run_id"),
        (lambda d: d.update(service={"path": "a\x00b", "service": "s:S"}), "service.path"),
        (
            lambda d: d.update(target={"kind": "kubernetes", "kubernetes": {"registry": "https://registry.io/team"}}),
            "field 'target.kubernetes.registry' = 'https://registry.io/team': expected a registry host",
        ),
        (
            lambda d: d.update(
                target={"kind": "kubernetes", "kubernetes": {"registry": "127.0.0.1:15000", "node_containerd": "/s"}}
            ),
            "target.kubernetes.registry and target.kubernetes.node_containerd both bring the image to the nodes",
        ),
        (lambda d: d.update(target={"kubernetes": {"release": "Model_1"}}), "expected a DNS label of at most 53"),
        (lambda d: d.update(target={"kubernetes": {"image_pull_secrets": ["a b"]}}), "image_pull_secrets[0]"),
        (lambda d: d.update(build={"platform": "amd64"}), "expected an OS/architecture such as linux/amd64"),
        (
            lambda d: d.update(
                autoscaling={
                    "metrics": [
                        {
                            "type": "External",
                            "pods": {"metric": {"name": "m"}, "target": {"type": "AverageValue", "averageValue": 1}},
                        }
                    ]
                }
            ),
            "metric type External needs an external: section",
        ),
        (
            lambda d: d.update(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}),
            "requests.cpu 2 is above limits.cpu 500m",
        ),
        (
            lambda d: d.update(target=in_cluster(loadgen_pods={"nodeselector": {}})),
            "unknown key 'target.kubernetes.loadgen_pods.nodeselector'",
        ),
        (
            lambda d: d.update(
                target=in_cluster(
                    loadgen_pods={"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}
                )
            ),
            "field 'target.kubernetes.loadgen_pods.resources': requests.memory 2Gi is above limits.memory 1Gi",
        ),
        (
            lambda d: d.update(
                target=in_cluster(loadgen_pods={"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]})
            ),
            "a toleration with operator Exists has no value",
        ),
        (
            lambda d: d.update(target=in_cluster(loadgen_pods={"tolerations": [{"key": "a", "tolerationSeconds": 5}]})),
            "tolerationSeconds applies to effect NoExecute only",
        ),
        (
            lambda d: d.update(target=in_cluster(loadgen_pods={"node_selector": {"pool": "not a label"}})),
            "target.kubernetes.loadgen_pods.node_selector.pool",
        ),
        (
            lambda d: d.update(target=in_cluster(loadgen_pods={"service_account_name": "Team_Runner"})),
            "target.kubernetes.loadgen_pods.service_account_name",
        ),
        (
            lambda d: d.update(
                target={"kind": "kubernetes", "kubernetes": {"loadgen_pods": {"service_account_name": "a"}}}
            ),
            "target.kubernetes.loadgen_pods applies to the pods of loadgen: in-cluster",
        ),
    ],
)
def test_invalid_scenarios_name_the_field(mutate: Any, expected: str) -> None:
    data = minimal()
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, "s.yaml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("s.yaml")
    assert "\n" not in message


def test_overrides_are_applied_then_validated(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    scenario = load_scenario(path, {"target.replicas": 3, "stages": [{"name": "b", "duration_s": 2, "users": 4}]})
    assert scenario.target.replicas == 3
    assert [s.name for s in scenario.stages] == ["b"]
    with pytest.raises(ConfigError, match=r"target\.replicas"):
        load_scenario(path, {"target.replicas": 0})


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_scenario(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(broken)


def test_autoscaling_section_uses_hpa_field_names() -> None:
    data = minimal()
    data["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [
            {
                "type": "Pods",
                "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "500m"}},
            }
        ],
        "behavior": {
            "scaleDown": {
                "stabilizationWindowSeconds": 30,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
            }
        },
    }
    scenario = parse_scenario(data)
    assert scenario.autoscaling is not None
    dumped = scenario.autoscaling.model_dump(by_alias=True, exclude_none=True)
    assert dumped["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert dumped["maxReplicas"] == 3


def write(tmp_path: Path, text: str | bytes, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def one_line_error(path: Path, overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, overrides)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_a_name_that_is_a_safe_directory_name_is_accepted() -> None:
    data = minimal()
    data.update(name="digits-1.2_x", output={"run_id": "2025-01-01.run_2"})
    scenario = parse_scenario(data)
    assert scenario.name == "digits-1.2_x" and scenario.output.run_id == "2025-01-01.run_2"


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, b"name: caf\xe9\n")
    assert "not UTF-8 text (byte 0xe9 at offset 9)" in one_line_error(path)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    text = yaml.safe_dump(minimal(), sort_keys=False) + "name: again\n"
    message = one_line_error(write(tmp_path, text))
    assert "duplicate key 'name' (first on line 1)" in message
    nested = "name: t\nservice: {path: ., service: 's:S', path: ..}\nstages: []\n"
    assert "line 2, column 36: duplicate key 'path'" in one_line_error(write(tmp_path, nested))


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    # A "billion laughs": nine lines that would expand to 10^9 list items.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    message = one_line_error(write(tmp_path, bomb))
    assert "line 2" in message and "alias *a: YAML aliases are not allowed" in message
    merge = "base: &base {duration_s: 5, users: 1}\nname: t\nstages: [{<<: *base, name: a}]\n"
    assert "YAML aliases are not allowed" in one_line_error(write(tmp_path, merge))


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert "nested deeper than 50 levels" in one_line_error(write(tmp_path, "[" * 10_000))
    assert "nested deeper than 50 levels" in one_line_error(
        write(tmp_path, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)))
    )


@pytest.mark.parametrize(
    "text",
    ["a: !!int abc", "!!int", "a: !!bool maybe", "a: !!timestamp 2020-13-45", "a: !!timestamp x", "a: !!binary 'é'"],
)
def test_values_that_cannot_take_their_tag_are_config_errors(tmp_path: Path, text: str) -> None:
    assert "not valid YAML" in one_line_error(write(tmp_path, text))


def test_cpu_ids_must_exist_on_this_machine(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    data = minimal()
    data["load"] = {"cpus": [0, cpus]}
    message = one_line_error(write(tmp_path, yaml.safe_dump(data)))
    assert f"field 'load.cpus' = [0, {cpus}]: this machine has no CPU {cpus} (it has CPUs 0 to {cpus - 1})" in message
    data["load"] = {"cpus": [cpus - 1]}
    assert load_scenario(write(tmp_path, yaml.safe_dump(data))).load.cpus == [cpus - 1]


def test_overrides_index_lists(tmp_path: Path) -> None:
    data = minimal()
    data["stages"].append({"name": "b", "duration_s": 5, "arrival_rate_rps": 10})
    data["objectives"] = [{"metric": "error_rate", "max": 0.01}]
    path = write(tmp_path, yaml.safe_dump(data))
    scenario = load_scenario(path, {"stages.0.users": 8, "stages.1.arrival_rate_rps": 20, "objectives.0.max": 0.05})
    assert scenario.stages[0].users == 8 and scenario.stages[1].arrival_rate_rps == 20
    assert scenario.objectives[0].max == 0.05
    for key, expected in [
        ("stages.2.users", "'stages' is a list of 2; '2' is not one of its indexes (0 to 1)"),
        ("stages.-1.users", "'stages' is a list of 2; '-1' is not one of its indexes"),
        ("stages.0.users.x", "'stages.0.users' is neither a section nor a list"),
        ("stages..users", "empty part"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"override '{key}': {expected}")):
            load_scenario(path, {key: 8})


def test_a_dumped_scenario_reads_back_unchanged(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "loadtests" / "autoscale.yaml")
    # The same object twice would make a plain dump write an alias, which the loader refuses.
    shared = scenario.model_copy(
        update={"stages": [scenario.stages[0], scenario.stages[0].model_copy(update={"name": "b"})]}
    )
    path = write(tmp_path, dump_scenario(shared))
    assert "&" not in path.read_text()
    # Everything but the secrets: service.env values are redacted in what a run directory keeps.
    redacted_env = {name: REDACTED for name in shared.service.env}
    assert load_scenario(path) == shared.model_copy(
        update={"service": shared.service.model_copy(update={"env": redacted_env})}
    )


# --------------------------------------------------------------------------- any input: a Scenario or a ConfigError

_FIELD_NAMES = [
    "name",
    "service",
    "path",
    "stages",
    "users",
    "duration_s",
    "target",
    "kind",
    "replicas",
    "load",
    "cpus",
    "objectives",
    "metric",
    "max",
    "resources",
    "requests",
    "cpu",
    "output",
    "run_id",
    "autoscaling",
    "metrics",
    "type",
    "<<",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from([".", "..", "../x", "a/b", "500m", "-1", "1Gi", "service:S", "/", "\x00", "local"]),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)
_YAMLISH = st.lists(
    st.sampled_from([*"ab0.:-[]{},&*!|>'\"#%@~? \n\t\\", "!!int ", "name: ", "<<: ", "\xe9"]), max_size=60
).map("".join)


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    """A valid scenario, often with one value somewhere replaced by a random document."""
    data: Any = minimal()
    data["objectives"] = [{"metric": "error_rate", "max": 0.01}]
    node = data if draw(st.sampled_from([False, True, True])) else None
    while isinstance(node, dict | list) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        if not isinstance(node[key], dict | list) or draw(st.booleans()):
            node[key] = draw(_DOCUMENTS)
            break
        node = node[key]
    return data


_RAW = st.one_of(
    st.binary(max_size=200),
    _YAMLISH.map(str.encode),
    _DOCUMENTS.map(lambda doc: yaml.safe_dump(doc).encode()),
)
_OVERRIDES = st.sampled_from([{}, {}, {"stages.0.users": 8}]) | st.dictionaries(
    st.sampled_from(
        ["stages.0.users", "stages.3.users", "name", "stages.0", "load.cpus.0", "target.replicas.x", "a..b"]
    ),
    _DOCUMENTS,
    max_size=2,
)


def _scenario_or_config_error(path: Path, overrides: dict[str, Any]) -> bool:
    """Whether `path` loads (True) or raises a one-line ConfigError (False); anything else fails the test."""
    try:
        scenario = load_scenario(path, overrides)
    except ConfigError as error:
        assert "\n" not in str(error)
        return False
    assert isinstance(scenario, Scenario)
    return True


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(raw=_RAW)
def test_any_bytes_are_a_scenario_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed.yaml"
    path.write_bytes(raw)
    _scenario_or_config_error(path, {})


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=_mutated(), overrides=_OVERRIDES)
def test_any_edit_of_a_scenario_is_a_scenario_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: Any, overrides: dict[str, Any]
) -> None:
    path = tmp_path_factory.getbasetemp() / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    _scenario_or_config_error(path, overrides)


# --------------------------------------------------------------------------- requests


def with_requests(*requests: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**minimal(), "requests": list(requests), **extra}


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([{"name": "a", "path": "predict"}], r"field 'requests\[0\]\.path' = 'predict'"),
        ([{"name": "a", "path": "/p", "weight": 0}], r"field 'requests\[0\]\.weight' = 0"),
        ([{"name": "a", "path": "/p", "method": "FETCH"}], r"field 'requests\[0\]\.method' = 'FETCH'"),
        ([{"name": "a", "path": "/p", "body_template": {"x": "{{x}}"}}], r"body_template names data set columns"),
        ([{"name": "a", "path": "/p", "method": "GET", "body_file": "b.jsonl"}], r"a GET request has no body"),
        ([{"name": "a", "path": "/p", "headers": {"Authorization": "Bearer ${token-x}"}}], r"\$\{NAME\}"),
        (
            [{"name": "a", "path": "/p", "check": {"fields": [{"field": "l", "expected_column": "label"}]}}],
            r"reads expected_column from a dataset",
        ),
        ([{"name": "a", "path": "/p"}, {"name": "a", "path": "/q"}], r"request names must be unique; repeated: a"),
        ([{"name": "a", "path": "/p", "check": {"status": [99]}}], r"field 'requests\[0\]\.check\.status\[0\]' = 99"),
    ],
)
def test_request_mistakes_name_the_field(requests: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_scenario(with_requests(*requests))
    assert "\n" not in str(caught.value)


def test_requests_and_a_payload_file_do_not_mix() -> None:
    data = with_requests({"name": "a", "path": "/p"}, payload={"source": "jsonl", "file": "b.jsonl"})
    with pytest.raises(ConfigError, match="with requests: give each request its body_file"):
        parse_scenario(data)


def test_request_files_resolve_against_the_scenario_and_survive_a_dump(tmp_path: Path) -> None:
    request = {
        "name": "predict",
        "path": "/predict",
        "headers": {"X-Api-Key": "${API_KEY}"},
        "body_template": {"rows": ["{{features}}"]},
        "dataset": "data/rows.jsonl",
        "check": {"fields": [{"field": "0", "expected_column": "label"}, {"field": "1", "among": [0, 1]}]},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(with_requests(request)))
    scenario = load_scenario(path)
    assert scenario.requests is not None
    assert scenario.requests[0].dataset == tmp_path / "data" / "rows.jsonl"
    again = parse_scenario(yaml.safe_load(dump_scenario(scenario)))
    assert again == scenario
    assert "${API_KEY}" in dump_scenario(scenario)  # the reference is kept, never its value


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("mismatch_rate", "needs requests whose check has fields"),
        ("bad_input_5xx_rate", "needs bad input"),
    ],
)
def test_answer_objectives_need_something_to_judge(metric: str, message: str) -> None:
    data = with_requests({"name": "a", "path": "/p"}, objectives=[{"metric": metric, "max": 0.01}])
    with pytest.raises(ConfigError, match=message):
        parse_scenario(data)
    checked = {
        "name": "a",
        "path": "/p",
        "check": {"status": [400, 422], "fields": [{"field": "detail", "among": ["bad"]}]},
    }
    assert parse_scenario(with_requests(checked, objectives=[{"metric": metric, "max": 0.01}]))


def test_an_external_service_needs_no_bentoml_project(tmp_path: Path) -> None:
    data = {k: v for k, v in minimal().items() if k != "service"}
    data["target"] = {"kind": "external", "urls": ["http://127.0.0.1:3000"]}
    path = tmp_path / "external.yaml"
    path.write_text(yaml.safe_dump(data))
    scenario = load_scenario(path)
    assert scenario.service.path is None and scenario.service.endpoint == "/classify"
    assert parse_scenario(yaml.safe_load(dump_scenario(scenario))) == scenario
    with pytest.raises(ConfigError, match="only the external target runs without a BentoML project"):
        _ = scenario.service.project_dir


def test_mismatch_rate_can_judge_answers_against_the_same_body_alone_without_an_expected_label() -> None:
    compared = {"name": "a", "path": "/p", "check": {"same_as_alone": {"field": "labels.0", "bodies": 20}}}
    scenario = parse_scenario(with_requests(compared, objectives=[{"metric": "mismatch_rate", "max": 0.01}]))
    assert scenario.requests is not None and scenario.requests[0].check.same_as_alone is not None
    assert parse_scenario(yaml.safe_load(dump_scenario(scenario))) == scenario
    wrong = {"name": "a", "path": "/p", "check": {"same_as_alone": {"field": "labels..0"}}}
    with pytest.raises(ConfigError, match=r"field 'requests\[0\]\.check\.same_as_alone\.field'"):
        parse_scenario(with_requests(wrong))


def test_a_user_locustfile_runs_users_stages_and_its_own_requests_only() -> None:
    data = {**minimal(), "load": {"locustfile": "users.py"}}
    data["stages"] = [{"name": "open", "duration_s": 5, "arrival_rate_rps": 10}]
    with pytest.raises(ConfigError, match=r"load\.locustfile runs users stages only; stage 'open'"):
        parse_scenario(data)
    mixed = with_requests({"name": "a", "path": "/p"}, load={"locustfile": "users.py"})
    with pytest.raises(ConfigError, match=r"load\.locustfile sends its own requests"):
        parse_scenario(mixed)


OPENAI = {
    "name": "complete",
    "path": "/v1/completions",
    "openai": {"synthetic": {"input_tokens": 8, "output_tokens": 4}},
}


def test_streamed_objectives_are_measured_once_a_request_streams() -> None:
    objectives = [
        {"metric": "ttft_p95_ms", "max": 500},
        {"metric": "goodput_fraction", "min": 0.9, "per_request": {"ttft_ms": 500, "tpot_ms": 50}},
        {"metric": "itl_p99_ms", "max": 50, "request": "complete"},
    ]
    scenario = parse_scenario({**with_requests(OPENAI, {"name": "health", "method": "GET", "path": "/h"}),
                               "objectives": objectives})  # fmt: skip
    assert scenario.objectives[2].name == "itl_p99_ms <= 50 for complete"
    request = scenario.requests[0] if scenario.requests else None
    assert request is not None and request.streams and request.openai_api == "completions"
    # Judged on the one request that does not stream, a streamed figure cannot be measured.
    on_health = {"metric": "ttft_p95_ms", "max": 500, "request": "health"}
    data = {**with_requests(OPENAI, {"name": "health", "method": "GET", "path": "/h"}), "objectives": [on_health]}
    with pytest.raises(ConfigError, match="objective 'ttft_p95_ms' on request 'health' needs requests whose answers"):
        parse_scenario(data)
    data["objectives"] = [{"metric": "latency_p95_ms", "max": 5, "request": "predict"}]
    with pytest.raises(ConfigError, match="names request 'predict', which is not one of: complete, health"):
        parse_scenario(data)
    with pytest.raises(ConfigError, match=r"which is not one of: \(no requests: section\)"):
        parse_scenario({**minimal(), "objectives": [{"metric": "error_rate", "max": 0.1, "request": "x"}]})


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"openai": {}}, "give prompts .* or synthetic"),
        ({"openai": {"prompts": "p", "synthetic": {"input_tokens": 1, "output_tokens": 1}}}, "one of them"),
        ({"openai": {"prompts": "p"}, "body_file": "b.jsonl"}, "openai builds the bodies"),
        ({"openai": {"prompts": "p"}, "method": "PUT"}, "an openai request is a POST"),
        ({"openai": {"prompts": "p"}, "stream": "sse"}, "read as stream openai"),
        ({"openai": {"prompts": "p"}, "path": "/generate"}, "openai.api is needed"),
        (
            {
                "openai": {"synthetic": {"input_tokens": 1, "output_tokens": 1, "token_ids": True}},
                "path": "/v1/chat/completions",
            },
            "synthetic.token_ids is for completions",
        ),
        ({"openai": {"synthetic": {"input_tokens": {"mean": 5, "min": 8}, "output_tokens": 1}}}, "below min"),
        ({"openai": {"synthetic": {"input_tokens": 4, "output_tokens": 1}, "max_tokens": 3}}, "remove max_tokens"),
        ({"stream": "sse", "check": {"fields": [{"field": "a", "equals": 1}]}}, "a streamed answer is judged by"),
    ],
)
def test_streamed_requests_that_cannot_be_sent_are_named(request_fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scenario(with_requests({"name": "r", "path": "/v1/completions", **request_fields}))


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"arrival": "gamma", "burstiness": 0}, "greater than 0"),
        ({"arrival": "poisson", "burstiness": 2}, "burstiness shapes gamma arrivals"),
        ({"arrival": "trace"}, "arrival trace and a trace file go together"),
        ({"trace": "t.txt"}, "arrival trace and a trace file go together"),
        ({"arrival": "uniform"}, "'constant', 'poisson', 'gamma' or 'trace'"),
    ],
)
def test_arrival_options_are_checked(stage: dict[str, Any], message: str) -> None:
    data = {**minimal(), "stages": [{"name": "a", "duration_s": 5, "arrival_rate_rps": 2, **stage}]}
    with pytest.raises(ConfigError, match=message):
        parse_scenario(data)
    gamma = {"name": "a", "duration_s": 5, "arrival_rate_rps": 2, "arrival": "gamma", "burstiness": 0.5}
    assert parse_scenario({**minimal(), "stages": [gamma]}).stages[0].burstiness == 0.5


def test_a_trace_file_is_read_relative_to_the_scenario_and_checked_before_the_run(tmp_path: Path) -> None:
    from harness.load.plan import stage_specs
    from harness.preflight import preflight

    (tmp_path / "arrivals.txt").write_text("0\n0.5\n2\n")
    data = {
        **minimal(),
        "service": {"path": str(tmp_path), "service": "service:S"},
        "requests": [{"name": "p", "path": "/p"}],
    }
    data["stages"] = [
        {"name": "a", "duration_s": 5, "arrival_rate_rps": 2, "arrival": "trace", "trace": "arrivals.txt"}
    ]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    scenario = load_scenario(path)
    assert scenario.stages[0].trace == tmp_path / "arrivals.txt"
    assert stage_specs(scenario, with_traces=True)[0].trace_s == (0.0, 0.5, 2.0)
    (tmp_path / "arrivals.txt").write_text("0\nlater\n")
    with pytest.raises(ConfigError, match=r"stages\[0\].trace '.*arrivals.txt': line 2: 'later' is not a number"):
        preflight(scenario)


def test_streamed_objectives_are_refused_without_a_request_that_streams() -> None:
    for metric, bound in (("ttft_p95_ms", {"max": 500}), ("goodput_rps", {"min": 1, "per_request": {"ttft_ms": 500}})):
        data = {**minimal(), "objectives": [{"metric": metric, **bound}]}
        with pytest.raises(ConfigError, match=f"objective '{metric[:4]}.*needs requests whose answers stream"):
            parse_scenario(data, "s.yaml")
    with pytest.raises(ConfigError, match="per_request"):
        parse_scenario({**minimal(), "objectives": [{"metric": "goodput_rps", "min": 1}]}, "s.yaml")
    with pytest.raises(ConfigError, match="per_request"):
        bad = {"metric": "goodput_rps", "min": 1, "per_request": {"ttft_ms": 1, "tbt_ms": 2}}
        parse_scenario({**minimal(), "objectives": [bad]}, "s.yaml")
