"""A server of known behaviour for measuring the harness's own accuracy (and for tests of it).

Modes:
  jitter  every request waits base_ms + U(0, jitter_ms), all in parallel: latency quantiles are
          known in closed form (uniform on [base, base + jitter]).
  queue   one worker serves requests first come, first served, each for exactly service_ms:
          an M/D/1 queue under Poisson arrivals, whose maximum throughput is 1000 / service_ms.
Serves POST on any path, GET /readyz, and GET /livez on 127.0.0.1 only (HTTP/1.1, keep-alive); no /metrics.
With --certfile and --keyfile it serves https, and with --client-ca it requires a client certificate (mTLS).
Standard library only, so its own overhead is small and easy to reason about.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import ssl
import time

RESPONSE = b'{"ok":true}'


class SyntheticServer:
    def __init__(self, mode: str, base_ms: float, jitter_ms: float, service_ms: float, seed: int) -> None:
        self.mode = mode
        self.base_s = base_ms / 1000
        self.jitter_s = jitter_ms / 1000
        self.service_s = service_ms / 1000
        self.rng = random.Random(seed)
        self.busy_until_s = 0.0

    async def serve_request(self) -> None:
        if self.mode == "jitter":
            await asyncio.sleep(self.base_s + self.rng.uniform(0, self.jitter_s))
            return
        # Deterministic service on one worker: each request finishes service_s after the later of
        # its arrival and the previous request's finish (the Lindley recursion). The finish time is
        # fixed on arrival, with no await in between, so it is exact and FIFO: taking "now" after
        # waiting for the previous request would add that request's sleep overshoot (the event
        # loop wakes up to ~1 ms late) to every service time and slow the queue down.
        arrival_s = time.monotonic()
        self.busy_until_s = max(arrival_s, self.busy_until_s) + self.service_s
        await asyncio.sleep(max(0.0, self.busy_until_s - time.monotonic()))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                length = 0
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                if method == "POST":
                    await self.serve_request()
                    status, body = b"200 OK", RESPONSE
                elif path.startswith(("/readyz", "/livez")):
                    status, body = b"200 OK", b"ok"
                else:
                    status, body = b"404 Not Found", b"not found"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def main_async(args: argparse.Namespace) -> None:
    server = SyntheticServer(args.mode, args.base_ms, args.jitter_ms, args.service_ms, args.seed)
    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
        if args.client_ca:
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=4096, ssl=context)
    async with listener:
        await asyncio.wait_for(listener.serve_forever(), timeout=args.max_lifetime_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["jitter", "queue"], default="jitter")
    parser.add_argument("--base-ms", type=float, default=20.0)
    parser.add_argument("--jitter-ms", type=float, default=10.0)
    parser.add_argument("--service-ms", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--certfile", help="PEM certificate: serve https")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    parser.add_argument("--client-ca", help="PEM CA of the client certificates to require (mTLS)")
    parser.add_argument("--max-lifetime-s", type=float, default=3600.0, help="the server stops itself after this")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt, TimeoutError):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
