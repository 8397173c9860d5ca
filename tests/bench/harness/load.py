"""Load generators: wrk for HTTP/1.1, h2load for HTTP/2 and gRPC (and for
fixed request counts under callgrind), a small asyncio HTTP/1.1 client when
wrk is missing, and the asyncio client that holds idle connections open.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .procs import pinned

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class Skip(Exception):
    """A scenario cannot run here (a tool is missing); the row says why."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: no compression flag, 4-byte length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


# echo.v1.EchoRequest{message: "hi"}: field 1 (string) = 0a 02 68 69.
HI = b"\x0a\x02hi"
# Messages per server stream: field 4 (count, varint) = 20 <n>.
STREAM_MESSAGES = 10

GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    protocol: str  # "h1" or "h2"
    path: str
    body: bytes | None = None
    headers: list[str] = field(default_factory=list)
    connections: int = 32
    streams: int = 1  # concurrent streams per connection (HTTP/2)
    unit: str = "requests"


SCENARIOS = [
    Scenario("h1", "HTTP/1.1 small requests, keep-alive (wrk -t1 -c32)", "h1", "/echo/status/200", connections=32),
    Scenario("h2", "HTTP/2 small requests, h2c (h2load -c8 -m16)", "h2", "/echo/status/200", connections=8, streams=16),
    Scenario(
        "grpc-unary",
        "gRPC unary /echo.v1.Echo/Unary (h2load -c8 -m16)",
        "h2",
        "/echo.v1.Echo/Unary",
        body=grpc_frame(HI),
        headers=GRPC_HEADERS,
        connections=8,
        streams=16,
        unit="calls",
    ),
    Scenario(
        "grpc-stream",
        f"gRPC server streaming /echo.v1.Echo/ServerStream, {STREAM_MESSAGES} messages per call (h2load -c8 -m16)",
        "h2",
        "/echo.v1.Echo/ServerStream",
        body=grpc_frame(HI + b"\x20" + varint(STREAM_MESSAGES)),
        headers=GRPC_HEADERS,
        connections=8,
        streams=16,
        unit="streams",
    ),
]


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def body_file(scn: Scenario, workdir: Path) -> Path | None:
    if scn.body is None:
        return None
    path = workdir / f"{scn.key}.bin"
    if not path.exists():
        path.write_bytes(scn.body)
    return path


def drive(scn: Scenario, addr: str, seconds: int, workdir: Path, cpu: int | None) -> dict:
    """Runs `scn` against `addr` for `seconds`; returns requests, rps and
    latency percentiles (ms) as the client saw them."""
    if scn.protocol == "h1" and scn.body is None:
        if shutil.which("wrk"):
            return wrk(scn, addr, seconds, cpu)
        return asyncio.run(py_h1(addr, scn.path, scn.connections, seconds))
    if not shutil.which("h2load"):
        raise Skip("h2load not installed (nghttp2-client)")
    return h2load_timed(scn, addr, seconds, workdir, cpu)


def wrk(scn: Scenario, addr: str, seconds: int, cpu: int | None) -> dict:
    argv = [
        "wrk",
        "-t1",
        f"-c{scn.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(TEMPLATES / "wrk-report.lua"),
        f"http://{addr}{scn.path}",
    ]
    done = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, timeout=seconds + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH-JSON "))
    secs = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "tool": "wrk",
        "requests": raw["requests"],
        "seconds": secs,
        "rps": raw["requests"] / secs,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors["connect"] + errors["read"] + errors["write"] + errors["status"] + errors["timeout"],
        "error_detail": errors,
    }


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def _h2load_argv(scn: Scenario, addr: str, workdir: Path) -> list[str]:
    argv = ["h2load", "-t1", f"-c{scn.connections}", f"-m{scn.streams}"]
    if scn.protocol == "h1":
        argv.append("--h1")
    data = body_file(scn, workdir)
    if data:
        argv += ["-d", str(data)]
    for header in scn.headers:
        argv += ["-H", header]
    return argv


def _parse_h2load(out: str) -> dict:
    finished, requests, codes = _FINISHED.search(out), _REQUESTS.search(out), _CODES.search(out)
    if not (finished and requests and codes):
        raise RuntimeError(f"cannot read h2load's output:\n{out}")
    secs = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    total, _started, done, ok, failed, errored, timeout = map(int, requests.groups())
    non2xx = sum(map(int, codes.groups()[1:]))
    return {
        "tool": "h2load",
        "requests": done,
        "succeeded": ok,
        "seconds": secs,
        "rps": done / secs if secs else 0.0,
        "errors": failed + errored + timeout + non2xx,
        "error_detail": {"failed": failed, "errored": errored, "timeout": timeout, "non_2xx": non2xx},
    }


def h2load_timed(scn: Scenario, addr: str, seconds: int, workdir: Path, cpu: int | None) -> dict:
    log = workdir / "h2load-latency.tsv"
    log.unlink(missing_ok=True)
    argv = _h2load_argv(scn, addr, workdir) + ["-D", str(seconds), f"--log-file={log}", f"http://{addr}{scn.path}"]
    done = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = _parse_h2load(done.stdout)
    # Per-request log: start (µs since epoch), status, duration (µs).
    latencies = []
    with open(log) as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) >= 3:
                latencies.append(int(cols[2]))
    latencies.sort()
    log.unlink(missing_ok=True)
    result["p50_ms"] = percentile(latencies, 50) / 1000
    result["p99_ms"] = percentile(latencies, 99) / 1000
    return result


def h2load_count(scn: Scenario, addr: str, n: int, workdir: Path, cpu: int | None, timeout: float = 600) -> dict:
    """Exactly `n` requests (for callgrind's fixed-count phases)."""
    argv = _h2load_argv(scn, addr, workdir) + ["-n", str(n), f"http://{addr}{scn.path}"]
    done = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = _parse_h2load(done.stdout)
    if result["succeeded"] != n:
        raise RuntimeError(f"h2load: {result['succeeded']} of {n} requests succeeded:\n{done.stdout}")
    return result


# --- asyncio HTTP/1.1 clients ------------------------------------------------


def _request(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gatehouse-bench\r\n\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            raise RuntimeError("chunked responses are not supported by the harness's client")
    if length:
        await reader.readexactly(length)
    return status


async def py_h1(addr: str, path: str, connections: int, seconds: float) -> dict:
    """A keep-alive HTTP/1.1 load loop, used only when wrk is missing."""
    host, port = addr.rsplit(":", 1)
    request = _request(path, addr)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - start)
                if not 200 <= status < 400:
                    errors += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    secs = time.monotonic() - started
    latencies.sort()
    return {
        "tool": "python-asyncio",
        "requests": len(latencies),
        "seconds": secs,
        "rps": len(latencies) / secs,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": errors,
    }


async def idle_connections(addr: str, n: int, concurrency: int, settle: float, measure) -> dict:
    """Opens `n` keep-alive connections, sends one request on each (at most
    `concurrency` in flight, so the proxy's upstream pool stays small), lets
    them sit idle for `settle` seconds, calls `measure()` while they are all
    open, then closes them."""
    host, port = addr.rsplit(":", 1)
    request = _request("/echo/status/200", addr)
    gate = asyncio.Semaphore(concurrency)
    open_conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    failures: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError as e:
                failures.append(f"connect: {e}")
                return
            open_conns.append((reader, writer))
            try:
                writer.write(request)
                status = await asyncio.wait_for(_read_response(reader), 10)
                if status != 200:
                    failures.append(f"status {status}")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                failures.append(f"request: {e!r}")

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    opened_in = time.monotonic() - started
    await asyncio.sleep(settle)
    # Connections the server closed meanwhile show as EOF on their reader.
    still_open = sum(1 for reader, _ in open_conns if not reader.at_eof())
    measured = measure()
    for _, writer in open_conns:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in open_conns), return_exceptions=True)
    return {
        "requested": n,
        "opened": len(open_conns),
        "open_at_measure": still_open,
        "failures": len(failures),
        "first_failures": failures[:3],
        "open_seconds": opened_in,
        **measured,
    }
