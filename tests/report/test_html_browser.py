"""report.html in a real headless Chromium (DevTools protocol over a websocket): no console errors, every plot
drawn as SVG, the verdict table visible; saves a screenshot to test-output/report.png."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket

from harness.report import write_reports
from harness.rundir import RunDirectory

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-output" / "report.png"
CHROMIUM = "/usr/bin/chromium"
DEADLINE_S = 90.0


def _ensure_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    subprocess.run(["sh", str(REPO / "scripts" / "install-system-packages.sh"), "chromium"], check=True, timeout=600)


@dataclass
class DevTools:
    """A minimal DevTools-protocol client for one page: commands, and the console errors seen so far."""

    ws: websocket.WebSocket
    next_id: int = 0
    errors: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def _note(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append("exception: " + str(details.get("exception", {}).get("description", details["text"])))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
        elif method:
            self.events.append(message)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self._note(message)

    def wait_for_event(self, method: str, timeout_s: float) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        end_s = time.monotonic() + timeout_s
        while time.monotonic() < end_s:
            self.ws.settimeout(max(0.1, end_s - time.monotonic()))
            message = json.loads(self.ws.recv())
            self._note(message)
            if message.get("method") == method:
                self.ws.settimeout(None)
                return
        raise AssertionError(f"no {method} within {timeout_s} s")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"evaluating {expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture
def chromium_page() -> Iterator[DevTools]:
    _ensure_chromium()
    profile = tempfile.mkdtemp(prefix="harness-chromium-")
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
            "--hide-scrollbars",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # With port 0 Chromium picks a free port and writes it to DevToolsActivePort in the profile.
        port_file = Path(profile) / "DevToolsActivePort"
        # Generous, as every wait here: a loaded machine starts Chromium slowly; its start is not under test.
        end_s = time.monotonic() + DEADLINE_S
        while not port_file.exists() or not port_file.read_text().strip():
            assert process.poll() is None, f"chromium exited with {process.returncode}"
            assert time.monotonic() < end_s, f"chromium did not open its DevTools port within {DEADLINE_S:g} s"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=DEADLINE_S) as response:
            targets = json.loads(response.read())
        page = next(t for t in targets if t["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=DEADLINE_S, suppress_origin=True)
        try:
            yield DevTools(ws)
        finally:
            ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_report_renders_in_headless_chromium(recorded_run: RunDirectory, chromium_page: DevTools) -> None:
    write_reports(recorded_run)
    page = chromium_page
    for domain in ("Runtime", "Log", "Page"):
        page.call(f"{domain}.enable")
    # Any request that leaves the file (a CDN script, a font) would show that the page is not self-contained.
    page.call("Network.enable")
    page.call("Page.navigate", url=recorded_run.file("report.html").as_uri())
    page.wait_for_event("Page.loadEventFired", timeout_s=DEADLINE_S)

    plot_ids: list[str] = page.evaluate("[...document.querySelectorAll('.plotly-graph-div')].map(d => d.id)")
    assert set(plot_ids) == {"plot-latency", "plot-throughput", "plot-knee", "plot-cpu", "plot-errors", "plot-server"}
    # Plotly draws asynchronously; wait until every plot has its SVG and trace paths.
    drawn_check = """[...document.querySelectorAll('.plotly-graph-div')].map(d => ({
        id: d.id,
        svgs: d.querySelectorAll('.main-svg').length,
        traces: d.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length,
        paths: [...d.querySelectorAll('.scatterlayer path.js-line, .barlayer path, .scatterlayer path.point')]
            .filter(p => (p.getAttribute('d') || '').length > 10).length,
        height: d.getBoundingClientRect().height,
    }))"""
    # Generous: a loaded machine draws slowly; how fast the page draws is not what this test checks.
    end_s = time.monotonic() + 90
    drawn = page.evaluate(drawn_check)
    while any(d["svgs"] == 0 or d["paths"] == 0 for d in drawn) and time.monotonic() < end_s:
        time.sleep(0.2)
        drawn = page.evaluate(drawn_check)
    for plot in drawn:
        assert plot["svgs"] >= 1, f"{plot['id']}: no plotly .main-svg"
        assert plot["traces"] >= 1, f"{plot['id']}: no trace group"
        assert plot["paths"] >= 1, f"{plot['id']}: no drawn line, bar or marker path"
        assert plot["height"] > 150, f"{plot['id']}: collapsed to {plot['height']} px"

    table = page.evaluate(
        """(() => { const t = document.getElementById('verdict-table'); const r = t.getBoundingClientRect();
        const s = getComputedStyle(t);
        return {rows: t.querySelectorAll('tbody tr').length, width: r.width, height: r.height, top: r.top,
                visible: s.display !== 'none' && s.visibility !== 'hidden',
                status: document.getElementById('overall-status').innerText}; })()"""
    )
    assert table["visible"] and table["width"] > 400 and table["height"] > 100
    assert table["rows"] == 15
    assert table["top"] < 1000, "the verdict table must be on the first screen"
    assert table["status"].startswith("FAIL")

    overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], f"the page is {overflow[0]} px wide in a {overflow[1]} px window"

    network = [e for e in page.events if e.get("method") == "Network.requestWillBeSent"]
    urls = [e["params"]["request"]["url"] for e in network]
    assert all(url.startswith(("file://", "data:", "about:")) for url in urls), urls

    metrics = page.call("Page.getLayoutMetrics")
    size = metrics["cssContentSize"]
    shot = page.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    )
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 50_000

    assert page.errors == [], page.errors
