"""Secrets out of run directories and the screen: URLs, service.env, manifests, free text."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.config import dump_scenario, parse_scenario, read_yaml
from harness.redact import REDACTED, redact_manifests, redact_scenario_data, redact_text, redact_url, url_credentials

SECRETS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~", min_size=4, max_size=30
)


@given(user=SECRETS, password=SECRETS, port=st.integers(min_value=1, max_value=65535))
def test_a_url_keeps_its_user_host_and_path_never_its_password(user: str, password: str, port: int) -> None:
    url = f"https://{user}:{password}@gateway.example:{port}/push?x=1"
    shown = redact_url(url)
    assert f":{REDACTED}@gateway.example:{port}/push?x=1" in shown and shown.startswith(f"https://{user}:")
    assert password not in shown.split("@", 1)[0].removeprefix(f"https://{user}:")
    assert url_credentials(url) == (f"https://gateway.example:{port}/push?x=1", (user, password))


def test_a_url_without_credentials_is_unchanged() -> None:
    assert redact_url("http://127.0.0.1:9091") == "http://127.0.0.1:9091"
    assert url_credentials("http://127.0.0.1:9091") == ("http://127.0.0.1:9091", None)
    escaped = f"http://bot:{urllib.parse.quote('p@ss/word', safe='')}@h:1"
    assert url_credentials(escaped)[1] == ("bot", "p@ss/word")


def test_the_saved_scenario_keeps_env_names_and_no_value_nor_url_password(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "secrets",
            "service": {"path": ".", "service": "s:S", "env": {"API_TOKEN": "tok-123456", "MODE": "fast"}},
            "stages": [{"name": "a", "duration_s": 1, "users": 1}],
            "metrics": {
                "pushgateway_url": "https://ci:hunter2-pw@push.example:9091",
                "remote_write_url": "https://rw:mimir-pw@mimir.example/api/v1/push",
            },
        }
    )
    text = dump_scenario(scenario)
    assert "tok-123456" not in text and "hunter2-pw" not in text and "fast" not in text and "mimir-pw" not in text
    assert "API_TOKEN" in text and "MODE" in text and "https://ci:<redacted>@push.example:9091" in text
    assert "https://rw:<redacted>@mimir.example/api/v1/push" in text
    # What a run directory keeps is still a valid scenario (`harness report` reads it back).
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    again = parse_scenario(read_yaml(path))
    assert again.service.env == {"API_TOKEN": REDACTED, "MODE": REDACTED}


def test_manifests_lose_the_values_of_the_named_variables_only() -> None:
    deployment = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "s",
                            "env": [{"name": "API_TOKEN", "value": "tok"}, {"name": "BENTOML_PORT", "value": "3000"}],
                        }
                    ]
                }
            }
        },
    }
    (redacted,) = redact_manifests([deployment], ["API_TOKEN"])
    assert redacted["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "API_TOKEN", "value": REDACTED},
        {"name": "BENTOML_PORT", "value": "3000"},
    ]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "tok", "input untouched"


@given(secret=SECRETS, before=st.text(max_size=20), after=st.text(max_size=20))
def test_free_text_never_shows_a_secret(secret: str, before: str, after: str) -> None:
    assert secret not in redact_text(before + secret + after + secret, [secret]).replace(REDACTED, "\0")


def test_request_headers_keep_environment_references_and_lose_literal_values() -> None:
    data = {
        "requests": [
            {
                "name": "predict",
                "headers": {
                    "Authorization": "Bearer ${API_TOKEN}",
                    "X-Api-Key": "${KEY}",
                    "X-Literal-Token": "abc123-secret",
                    "Cookie": "session=${SESSION}",
                },
            }
        ]
    }
    headers = redact_scenario_data(data)["requests"][0]["headers"]
    assert headers["Authorization"] == "Bearer ${API_TOKEN}" and headers["X-Api-Key"] == "${KEY}"
    assert headers["X-Literal-Token"] == REDACTED and headers["Cookie"] == REDACTED
    assert data["requests"][0]["headers"]["X-Literal-Token"] == "abc123-secret"  # the scenario itself is untouched
