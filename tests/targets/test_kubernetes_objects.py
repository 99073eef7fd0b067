"""Whose an object is and until when: the marks on every object the harness creates, and their reading."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.targets.base import OWNER_LABEL, RUN_LABEL
from harness.targets.kubernetes_objects import (
    EXPIRES_ANNOTATION,
    default_release,
    describe_owner,
    expired,
    expiry_s,
    expiry_timestamp,
    mark,
    run_of,
)

NOW_S = 1_740_830_400.0  # 2025-03-01T12:00:00Z


def test_each_run_has_its_own_release_name_a_dns_label() -> None:
    first, second = (
        default_release("20250301T120000Z-nightly-a1b2c3"),
        default_release("20250301T120000Z-nightly-d4e5f6"),
    )
    assert first != second and first.startswith("model-service-") and len(first) == len("model-service-") + 6
    assert default_release("20250301T120000Z-nightly-a1b2c3") == first, "the same run, the same name"


def test_marks_label_the_run_and_annotate_the_expiry() -> None:
    manifest = {"kind": "Service", "metadata": {"name": "x", "labels": {"app": "a"}}}
    expires = expiry_timestamp(NOW_S, 3900)
    assert expires == "2025-03-01T13:05:00Z"
    assert mark(manifest, "run-1", "host-1-2", expires)["metadata"] == {
        "name": "x",
        "labels": {"app": "a", RUN_LABEL: "run-1", OWNER_LABEL: "host-1-2"},
        "annotations": {EXPIRES_ANNOTATION: expires},
    }
    assert run_of(manifest) == "run-1"


@given(st.floats(min_value=-86400 * 365, max_value=86400 * 365))
def test_an_object_expires_at_its_annotation(lifetime_s: float) -> None:
    stored = mark({"metadata": {"name": "x"}}, "run", "owner", expiry_timestamp(NOW_S, lifetime_s))
    moment = expiry_s(stored)
    assert moment is not None and abs(moment - (NOW_S + lifetime_s)) < 1
    assert expired(stored, moment) and not expired(stored, moment - 1)


def test_objects_without_a_readable_expiry_never_expire() -> None:
    assert not expired({"metadata": {}}, NOW_S)
    assert not expired({"metadata": {"annotations": {EXPIRES_ANNOTATION: "tomorrow"}}}, NOW_S)


def test_the_owner_is_named_by_run_else_by_field_managers() -> None:
    ours = {"metadata": {"labels": {RUN_LABEL: "run-7", OWNER_LABEL: "ci-9-100"}}}
    assert describe_owner(ours) == "harness run run-7 (harness process ci-9-100)"
    theirs = {
        "metadata": {
            "managedFields": [{"manager": "kubectl-client-side-apply"}, {"manager": "kube-controller-manager"}]
        }
    }
    assert describe_owner(theirs) == "field manager(s) kube-controller-manager, kubectl-client-side-apply"
    assert describe_owner({"metadata": {}}).startswith("an owner that names itself nowhere")
