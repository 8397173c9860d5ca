"""Child processes, and what /proc says about them: CPU time, resident
memory, descendants and CPU affinity.

Every process the harness starts goes through `Proc`, in a session of its
own, so that stopping it (`stop`, or `stop_all` on the way out) signals its
whole process group by id and leaves nothing behind: nginx and HAProxy fork
workers, valgrind runs the proxy in its own pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every process started and not yet stopped, newest last.
_live: list["Proc"] = []


class Proc:
    """One child process (and its descendants), optionally pinned to a CPU."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        stdout: Path,
        stderr: Path,
        env: dict[str, str] | None = None,
        cpu: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cpu = cpu
        self.argv = pinned(argv, cpu)
        self.stdout_path = stdout
        self.stderr_path = stderr
        # Append mode, so the harness may truncate a log file between runs
        # while the process keeps writing to it.
        self._out = open(stdout, "ab")
        self._err = open(stderr, "ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_affinity_setter(cpu) if cpu is not None and not shutil.which("taskset") else None,
        )
        self.pid = self.popen.pid
        _live.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """This process and its live descendants."""
        return descendants(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        """Signals the process group, waits, and kills what is left."""
        if self.alive():
            _killpg(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Workers may outlive a leader that exited; the group id stays ours.
        _killpg(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()
        self._err.close()
        if self in _live:
            _live.remove(self)

    def tail(self, lines: int = 8) -> str:
        """The last lines of its stdout and stderr, for error messages."""
        out = []
        try:
            err = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            err = []
        # Under valgrind the cause is above the summary the tail would show.
        for i, line in enumerate(err):
            if "Process terminating" in line:
                out.append(f"--- {self.name} under valgrind:")
                out.extend(err[i : i + 6])
                break
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            if text:
                out.append(f"--- {self.name} {label} ({path}):")
                out.extend(text)
        return "\n".join(out)


def stop_all() -> None:
    """Stops every process the harness started, newest first."""
    for proc in reversed(list(_live)):
        try:
            proc.stop(timeout=3)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """`taskset -c CPU argv…` when pinning (taskset execs, so the pid stays)."""
    if cpu is None or not shutil.which("taskset"):
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def _affinity_setter(cpu: int):
    def set_affinity() -> None:
        os.sched_setaffinity(0, {cpu})

    return set_affinity


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), from
    utime + stime in /proc/PID/stat."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    """Sum of VmRSS over these processes, in KiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def affinity(pid: int) -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(pid))
    except OSError:
        return None


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Calls `predicate` until it returns something truthy or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
