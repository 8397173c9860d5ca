"""Instructions per proxied request, counted by callgrind.

Each proxy runs as one process under `valgrind --tool=callgrind` (nginx with
`master_process off`, HAProxy without `-W`). For every scenario the harness
asks callgrind for a dump (zeroing the counters), sends N1 requests with a
fixed-count client (h2load -n), dumps, sends N2 requests, dumps again, and
reports (I(N2) - I(N1)) / (N2 - N1): start-up, lazy initialisation (a warm-up
precedes everything), connection set-up and idle timers cancel out. The count
repeats within about 1% where wall-clock timings swing by tens of percent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from .load import Scenario, h2load_count
from .procs import wait_until

_TOTALS = re.compile(r"^(?:totals|summary):\s+(\d+)", re.M)


class Session:
    """A proxy under callgrind and the dumps taken so far."""

    def __init__(self, target, out_file: Path) -> None:
        self.target = target
        self.out_file = out_file
        self.dumps = 0

    def dump(self) -> tuple[int, Path]:
        """Writes the counters since the previous dump to OUT.<k> and zeroes them."""
        done = subprocess.run(
            ["callgrind_control", "-d", str(self.target.proc.pid)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"callgrind_control failed:\n{done.stdout}\n{done.stderr}")
        self.dumps += 1
        path = Path(f"{self.out_file}.{self.dumps}")

        def total() -> int | None:
            try:
                match = _TOTALS.search(path.read_text(errors="replace"))
            except OSError:
                return None
            return int(match.group(1)) if match else None

        value = wait_until(total, 60, interval=0.1)
        if value is None:
            raise RuntimeError(f"callgrind wrote no totals to {path}")
        return value, path


def available() -> str | None:
    """None when callgrind can run, else why not."""
    for tool in ("valgrind", "callgrind_control", "h2load"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    return None


def measure(
    start_target, scenarios: list[Scenario], n1: int, n2: int, warmup: int, workdir: Path, out_file: Path, cpu
) -> tuple[list[dict], dict[str, Path]]:
    """Starts a proxy under callgrind (`start_target(out_file)`), measures
    every scenario, stops it. Returns one result per scenario and the dump
    file of each scenario's N2 phase (for profiles)."""
    started = time.monotonic()
    target = start_target(out_file)
    session = Session(target, out_file)
    results, profiles = [], {}
    try:
        for scn in scenarios:
            h2load_count(scn, target.h1 if scn.protocol == "h1" else target.h2, warmup, workdir, cpu)
        for scn in scenarios:
            addr = target.h1 if scn.protocol == "h1" else target.h2
            session.dump()  # counters from here on belong to this scenario
            h2load_count(scn, addr, n1, workdir, cpu)
            ir1, _ = session.dump()
            h2load_count(scn, addr, n2, workdir, cpu)
            ir2, path2 = session.dump()
            profiles[scn.key] = path2
            results.append(
                {
                    "target": target.key,
                    "scenario": scn.key,
                    "n1": n1,
                    "n2": n2,
                    "instructions_n1": ir1,
                    "instructions_n2": ir2,
                    "instructions_per_request": (ir2 - ir1) / (n2 - n1),
                }
            )
    finally:
        target.stop()
    for r in results:
        r["session_seconds"] = round(time.monotonic() - started, 1)
    return results, profiles


def median_of_sessions(per_session: list[list[dict]]) -> list[dict]:
    """One result per scenario from several sessions' results: the median
    session's numbers, with every session's count in `sessions`."""
    merged = []
    for i, first in enumerate(per_session[0]):
        runs = sorted((s[i] for s in per_session), key=lambda r: r["instructions_per_request"])
        mid = dict(runs[(len(runs) - 1) // 2])
        mid["sessions"] = [r["instructions_per_request"] for r in (s[i] for s in per_session)]
        if any(r["scenario"] != first["scenario"] for r in runs):
            raise RuntimeError("callgrind sessions measured different scenarios")
        merged.append(mid)
    return merged


_ROW = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def without_open_calls(src: Path, dst: Path) -> Path:
    """A copy of a dump without the `calls=0` records callgrind writes for
    calls still open when it dumped (the thread start, the runtime's worker
    loop): callgrind_annotate 3.19 counts those as the caller's own cost,
    which puts `clone` at the top of the self profile."""
    lines = src.read_text(errors="replace").split("\n")
    out, skip = [], False
    for line in lines:
        if skip:
            skip = False
            continue
        if line.startswith("calls=0 "):
            skip = True
            continue
        out.append(line)
    dst.write_text("\n".join(out))
    return dst


def annotate(path: Path, inclusive: bool) -> list[tuple[int, str, str]]:
    """Every function of a dump as (instructions, function, object), the
    `file:function` rows of callgrind_annotate merged per function (inlined
    code is listed once per source file): self costs add up; for inclusive
    costs the largest row is kept, since the rows' callees overlap."""
    if not shutil.which("callgrind_annotate"):
        return []
    argv = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    merged: dict[tuple[str, str], int] = {}
    in_table = False
    for line in done.stdout.splitlines():
        if re.match(r"^\s*Ir\s+file:function", line):
            in_table = True
            continue
        if not in_table:
            continue
        m = _ROW.match(line)
        if not m:
            if merged and not line.startswith("-"):
                break
            continue
        ir, rest = int(m.group(1).replace(",", "")), m.group(2)
        obj = ""
        if rest.endswith("]") and " [" in rest:
            rest, obj = rest.rsplit(" [", 1)
            obj = obj.rstrip("]").rsplit("/", 1)[-1]
        # `file:function`: source paths hold no colon, function names do.
        func = rest if rest.startswith("???") or ":" not in rest else rest.split(":", 1)[1]
        key = (func, obj)
        merged[key] = max(merged.get(key, 0), ir) if inclusive else merged.get(key, 0) + ir
    # Objects are named only on some rows of a function; keep the named one.
    by_func: dict[str, tuple[int, str]] = {}
    for (func, obj), ir in merged.items():
        total, named = by_func.get(func, (0, ""))
        by_func[func] = (max(total, ir) if inclusive else total + ir, named or obj)
    rows = [(ir, func, obj) for func, (ir, obj) in by_func.items()]
    rows.sort(key=lambda r: -r[0])
    return rows
