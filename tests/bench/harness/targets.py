"""What the harness drives: the echo upstream itself ("direct") and the
proxies in front of it, each configured from `tests/bench/templates/` the way
a user would deploy it, with keep-alive to the upstream and one access line
per request (except "Gatehouse, bare", which turns metrics and logs off).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .procs import Proc, wait_until

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Requests the harness sends to check a target is up; every scenario's
# HTTP path ends in a route of the echo server.
PROBE_PATH = "/echo/status/200"


class StartError(RuntimeError):
    pass


def render(template: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_0-9]+@@", text)
    if left:
        raise ValueError(f"{template}: no value for {sorted(set(left))}")
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(addr: str, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def valgrind_prefix(out_file: Path) -> list[str]:
    """callgrind with the counters the harness reads; dumps are requested
    with `callgrind_control -d` and land in OUT.1, OUT.2, …"""
    return [
        "valgrind",
        "--tool=callgrind",
        "--dump-instr=no",
        "--collect-jumps=no",
        f"--callgrind-out-file={out_file}",
    ]


class Target:
    """A server under test. Subclasses set `key`, `label` and start it."""

    key = ""
    label = ""
    # The proxies' access log (a file the harness truncates between runs),
    # so it can check that every request was logged.
    log_path: Path | None = None
    logs_requests = False
    # HTTP/1.1 and HTTP/2 (h2c prior knowledge) addresses; the same address
    # when one port takes both.
    h1: str = ""
    h2: str = ""
    proc: Proc

    def pids(self) -> list[int]:
        return self.proc.pids()

    def stop(self) -> None:
        self.proc.stop()

    def wait_ready(self, timeout: float, probe: str = PROBE_PATH) -> None:
        def ready() -> bool:
            if not self.proc.alive():
                raise StartError(f"{self.label} exited at start-up\n{self.proc.tail()}")
            try:
                status, _ = http_get(self.h1, probe, timeout=5)
                return status == 200
            except OSError:
                return False

        if not wait_until(ready, timeout, interval=0.1):
            raise StartError(f"{self.label} did not answer {probe} with 200 within {timeout:.0f}s\n{self.proc.tail()}")

    def version(self) -> str:
        return ""


class Echo(Target):
    """`gatehouse-echo`: the upstream of every proxy, and "direct" itself."""

    key = "direct"
    label = "direct (echo)"

    def __init__(self, binary: Path, rundir: Path, cpu: int | None) -> None:
        self.binary = binary
        out = rundir / "echo.out"
        self.proc = Proc(
            "echo",
            [str(binary), "--listen", "127.0.0.1:0", "--name", "echo"],
            stdout=out,
            stderr=rundir / "echo.err",
            cpu=cpu,
        )

        def addr() -> str | None:
            if not self.proc.alive():
                raise StartError(f"gatehouse-echo exited at start-up\n{self.proc.tail()}")
            for line in out.read_text().splitlines():
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if value.get("msg") == "listening":
                    return value["addr"]
            return None

        found = wait_until(addr, 30)
        if not found:
            raise StartError(f"gatehouse-echo did not report its address\n{self.proc.tail()}")
        self.h1 = self.h2 = self.addr = found
        self.wait_ready(10)

    def version(self) -> str:
        return _first_line([str(self.binary), "--version"])


class Gatehouse(Target):
    """`gatehouse serve`, with RED metrics and access logs on or both off."""

    def __init__(
        self,
        binary: Path,
        rundir: Path,
        upstream: str,
        cpu: int | None,
        *,
        observed: bool,
        routes: str | None = None,
        probe: str = PROBE_PATH,
        name: str | None = None,
        callgrind: Path | None = None,
    ) -> None:
        self.binary = binary
        self.observed = observed
        self.key = name or ("gatehouse" if observed else "gatehouse-bare")
        self.label = "Gatehouse, metrics+logs" if observed else "Gatehouse, bare"
        self.logs_requests = observed
        if routes is None:
            routes = "  - name: echo-http\n    match: { path_prefix: /echo }\n    upstream: echo\n"
        config = rundir / f"{self.key}.yaml"
        config.write_text(
            render(
                "gatehouse.yaml",
                {
                    "DIR": str(rundir),
                    "NAME": self.key,
                    "ACCESS_LOG": "true" if observed else "false",
                    "UPSTREAM": upstream,
                    "ROUTES": routes.rstrip("\n"),
                },
            )
        )
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG" and not k.startswith("OTEL_")}
        env["OTEL_METRICS_EXPORTER"] = "prometheus" if observed else "none"
        out = rundir / f"{self.key}.out"
        argv = [str(binary), "serve", "--config", str(config)]
        if callgrind:
            argv = valgrind_prefix(callgrind) + argv
        self.proc = Proc(self.key, argv, stdout=out, stderr=rundir / f"{self.key}.err", env=env, cpu=cpu, cwd=rundir)
        self.log_path = out

        def listening() -> dict | None:
            if not self.proc.alive():
                raise StartError(f"{self.label} exited at start-up\n{self.proc.tail()}")
            for line in out.read_text(errors="replace").splitlines():
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if value.get("msg") == "listening" and "public" in value:
                    return value
            return None

        found = wait_until(listening, 120 if callgrind else 30)
        if not found:
            raise StartError(f"{self.label} did not report its listeners\n{self.proc.tail()}")
        self.h1 = self.h2 = found["public"]
        self.admin = found["admin"]
        self.wait_ready(120 if callgrind else 15, probe)

    def version(self) -> str:
        """`0.1.0 (commit abc1234, built …)` from the admin port's `/info`,
        which names the commit the binary was built from."""
        version = self.version_of(self.binary)
        try:
            status, body = http_get(self.admin, "/info")
            info = json.loads(body) if status == 200 else {}
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and info.get("commit"):
            version += f" (commit {info['commit']}" + (f", built {info['build_time']})" if info.get("build_time") else ")")
        return version

    @staticmethod
    def version_of(binary: Path) -> str:
        return _first_line([str(binary), "--version"]).removeprefix("gatehouse ")


class Nginx(Target):
    """nginx: a master and one worker process (one process under callgrind)."""

    key = "nginx"
    label = "nginx"

    def __init__(self, rundir: Path, upstream: str, cpu: int | None, nofile: int, callgrind: Path | None = None) -> None:
        self.h1 = f"127.0.0.1:{free_port()}"
        self.h2 = f"127.0.0.1:{free_port()}"
        (rundir / "nginx-tmp").mkdir(exist_ok=True)
        config = rundir / "nginx.conf"
        config.write_text(
            render(
                "nginx.conf",
                {
                    "DIR": str(rundir),
                    # Under callgrind one process does all the work, so one
                    # valgrind counts it all.
                    "MASTER_PROCESS": "off" if callgrind else "on",
                    "NOFILE": str(nofile),
                    "WORKER_CONNECTIONS": str(max(1024, nofile - 200)),
                    "UPSTREAM": upstream,
                    "HTTP1_ADDR": self.h1,
                    "HTTP2_ADDR": self.h2,
                },
            )
        )
        self.log_path = rundir / "nginx-access.log"
        self.log_path.touch()
        self.logs_requests = True
        argv = ["nginx", "-c", str(config), "-e", str(rundir / "nginx-error.log")]
        if callgrind:
            argv = valgrind_prefix(callgrind) + argv
        self.proc = Proc("nginx", argv, stdout=rundir / "nginx.out", stderr=rundir / "nginx.err", cpu=cpu)
        self.wait_ready(120 if callgrind else 15)

    def version(self) -> str:
        return nginx_version()


class HAProxy(Target):
    """HAProxy: master/worker (`-W`), one thread; a single process under callgrind."""

    key = "haproxy"
    label = "HAProxy"

    def __init__(self, rundir: Path, upstream: str, cpu: int | None, maxconn: int, callgrind: Path | None = None) -> None:
        self.h1 = f"127.0.0.1:{free_port()}"
        self.h2 = f"127.0.0.1:{free_port()}"
        config = rundir / "haproxy.cfg"
        config.write_text(
            render(
                "haproxy.cfg",
                {"MAXCONN": str(maxconn), "UPSTREAM": upstream, "HTTP1_ADDR": self.h1, "HTTP2_ADDR": self.h2},
            )
        )
        # `log stdout`: the access lines are HAProxy's standard output.
        self.log_path = rundir / "haproxy.log"
        self.logs_requests = True
        argv = ["haproxy", "-db", "-f", str(config)] if callgrind else ["haproxy", "-W", "-db", "-f", str(config)]
        if callgrind:
            argv = valgrind_prefix(callgrind) + argv
        self.proc = Proc("haproxy", argv, stdout=self.log_path, stderr=rundir / "haproxy.err", cpu=cpu)
        self.wait_ready(120 if callgrind else 15)

    def version(self) -> str:
        return haproxy_version()


def nginx_version() -> str:
    return _first_line(["nginx", "-v"]).replace("nginx version: ", "").removeprefix("nginx/")


def haproxy_version() -> str:
    return _first_line(["haproxy", "-v"]).replace("HAProxy version ", "").split(" ")[0]


def _first_line(argv: list[str]) -> str:
    if not shutil.which(argv[0]) and not Path(argv[0]).exists():
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def settle_and_count(path: Path, timeout: float = 2.0) -> int:
    """Lines in an access log once it stops growing (writers may be
    asynchronous), then empties it for the next run."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = path.stat().st_size
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since > 0.15:
            break
        time.sleep(0.05)
    n = count_lines(path)
    os.truncate(path, 0)
    return n
