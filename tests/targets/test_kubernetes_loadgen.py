"""The pure half of the in-cluster load driver: Job states and the master's printed results."""

from __future__ import annotations

from harness.targets.kubernetes_loadgen import job_finished, marked_results


def test_job_finished_reads_the_job_conditions() -> None:
    assert job_finished(None) is None
    assert job_finished({"status": {"active": 1}}) is None
    assert job_finished({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) is True
    assert job_finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) is False
    assert job_finished({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}) is None


def test_marked_results_split_the_master_log_by_file() -> None:
    log = "\n".join(
        [
            "some locust output",
            "=== harness-loadgen-result locust.json ===",
            "[",
            '{"name": "/classify"}',
            "]=== harness-loadgen-end ===",
            "=== harness-loadgen-result locust_failures.csv ===",
            "Method,Name,Error",
            "=== harness-loadgen-end ===",
            "trailing",
        ]
    )
    results = marked_results(log)
    assert results == {"locust.json": '[\n{"name": "/classify"}\n]', "locust_failures.csv": "Method,Name,Error"}
