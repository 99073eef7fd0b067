"""Large request bodies through the load generator's HTTP client (`python -m bench.large_bodies`, about a minute):
bodies of 4 KiB to 16 MiB POSTed one after another by Locust's FastHttpSession to a null server in another
process, with Nagle's algorithm on (geventhttpclient's default) and off (what harness/load/locustfile.py sets),
side by side: latency p50/p90 and the client's CPU per request. Also what geventhttpclient does with the body:
it sends `head + body` in one write (one copy of a bytes body per request, timed here) and fails on a memoryview.
"""

from gevent import monkey

monkey.patch_all()

# The patch must come first: gevent's sockets for everything below.
import resource  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from typing import Any  # noqa: E402

from geventhttpclient.connectionpool import ConnectionPool  # noqa: E402
from locust.contrib.fasthttp import FastHttpSession  # noqa: E402
from locust.event import Events  # noqa: E402

from harness.processes import free_port  # noqa: E402

SIZES_BYTES = (4 << 10, 400 << 10, 4 << 20, 16 << 20)
REQUESTS = {4 << 10: 400, 400 << 10: 300, 4 << 20: 60, 16 << 20: 30}
# A server that reads each request whole and answers 200 at once, one thread per connection (no gevent).
NULL_SERVER = textwrap.dedent(
    r"""
    import re, socket, sys, threading
    LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    def serve(conn):
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                match = LENGTH.search(head)
                missing = (int(match.group(1)) if match else 0) - len(buffer)
                while missing > 0:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        return
                    missing -= len(chunk)
                buffer = b""
                conn.sendall(ANSWER)
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """
)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _no_delay(_pool: ConnectionPool, sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def measure(url: str, size_bytes: int, nagle: bool) -> dict[str, float]:
    """Latency p50/p90 (ms) and client CPU per request (ms) of POSTs of `size_bytes` on one connection."""
    original = ConnectionPool.after_connect
    if not nagle:
        ConnectionPool.after_connect = _no_delay  # type: ignore[method-assign,assignment]
    try:
        session = FastHttpSession(
            base_url=url,
            request_event=Events().request,  # type: ignore[no-untyped-call]
            user=None,
            network_timeout=10,
            connection_timeout=10,
        )
        body = bytes(size_bytes)
        latencies_ms = []
        count = REQUESTS[size_bytes]
        started_cpu_s = _cpu_s()
        for _ in range(count):
            with session.request("POST", url + "/", data=body, catch_response=True) as response:  # type: ignore[arg-type]
                assert response.status_code == 200, response.status_code
                latencies_ms.append(float(response.request_meta["response_time"]))
                response.success()
        cpu_ms = (_cpu_s() - started_cpu_s) / count * 1000
    finally:
        ConnectionPool.after_connect = original  # type: ignore[method-assign]
    latencies_ms.sort()
    return {"p50_ms": latencies_ms[count // 2], "p90_ms": latencies_ms[int(count * 0.9)], "cpu_ms": cpu_ms}


def memoryview_error(url: str) -> str:
    session = FastHttpSession(base_url=url, request_event=Events().request, user=None, network_timeout=5)  # type: ignore[no-untyped-call]
    try:
        with session.request("POST", url + "/", data=memoryview(b"x" * 100), catch_response=True) as response:  # type: ignore[arg-type]
            response.success()
            error: Any = getattr(response, "error", None)
            return "sent" if error is None else f"{type(error).__name__}: {error}"
    except Exception as error:  # what the client raises is the finding
        return f"{type(error).__name__}: {error}"


def main() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", NULL_SERVER, str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline_s = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline_s:
                    raise
                time.sleep(0.1)
        print(
            f"{'body':>9}  {'Nagle on: p50':>13} {'p90':>8} {'CPU/req':>8}   {'off: p50':>9} {'p90':>8} {'CPU/req':>8}"
        )
        for size_bytes in SIZES_BYTES:
            on, off = measure(url, size_bytes, nagle=True), measure(url, size_bytes, nagle=False)
            label = f"{size_bytes >> 20} MiB" if size_bytes >= 1 << 20 else f"{size_bytes >> 10} KiB"
            print(
                f"{label:>9}  {on['p50_ms']:10.2f} ms {on['p90_ms']:5.2f} ms {on['cpu_ms']:5.2f} ms"
                f"   {off['p50_ms']:6.2f} ms {off['p90_ms']:5.2f} ms {off['cpu_ms']:5.2f} ms"
            )
        head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4194304\r\n\r\n"
        body = bytes(4 << 20)
        copy_ms = min(timeit.repeat(lambda: head + body, number=20, repeat=5)) / 20 * 1000
        print(f"geventhttpclient sends head + body in one write: the copy of a 4 MiB bytes body takes {copy_ms:.3f} ms")
        print(f"a memoryview body: {memoryview_error(url)}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
