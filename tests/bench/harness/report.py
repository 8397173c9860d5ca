"""Aggregates the raw runs (median over rounds) and prints one Markdown table
per scenario, with ratios to nginx and to the direct connection."""

from __future__ import annotations

import math
import random
import statistics

NGINX = "nginx"
DIRECT = "direct"


def _median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def summarize_runs(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """{scenario: {target: medians over rounds}} for the throughput scenarios."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["scenario"], run["target"]), []).append(run)
    out: dict[str, dict[str, dict]] = {}
    for (scenario, target), rows in grouped.items():
        ok = [r for r in rows if "skipped" not in r and "error" not in r]
        summary: dict = {"rounds": len(ok), "label": rows[0].get("label", target)}
        if not ok:
            summary["note"] = rows[0].get("skipped") or rows[0].get("error")
        else:
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request", "upstream_cpu_us_per_request", "core_busy"):
                summary[key] = _median([r.get(key) for r in ok])
            summary["rps_min"] = min(r["rps"] for r in ok)
            summary["rps_max"] = max(r["rps"] for r in ok)
            summary["rss_kib"] = max(r["rss_kib"] for r in ok)
            summary["errors"] = sum(r.get("errors", 0) for r in ok)
            logged = [r["log_lines_per_request"] for r in ok if r.get("log_lines_per_request") is not None]
            if logged:
                summary["log_lines_per_request"] = min(logged)
        out.setdefault(scenario, {})[target] = summary
    return out


def _fmt(value, digits: int = 1, thousands: bool = False) -> str:
    if value is None:
        return "—"
    if thousands:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(value, base) -> str:
    if value is None or base in (None, 0):
        return "—"
    return f"{value / base:.2f}×"


COLUMNS = (
    "Columns: req/s, latency p50/p99 (client side) and ratios to nginx and to direct; CPU µs/req: the target's "
    "utime+stime over the run ÷ requests; core busy: that CPU time ÷ the run's length (a proxy well below 100% was "
    "paced by the client side: load generator and echo share the other core); RSS: VmRSS summed over the target's "
    "processes; instr/req: callgrind, one process per proxy."
)


def throughput_table(title: str, rows: dict[str, dict], instructions: dict[str, float], order: list[str]) -> list[str]:
    nginx = rows.get(NGINX, {})
    direct = rows.get(DIRECT, {})
    nginx_ir = instructions.get(NGINX)
    lines = [
        f"### {title}",
        "",
        "| target | req/s | ×nginx | ×direct | p50 ms | p99 ms | p99 ×nginx | CPU µs/req | CPU ×nginx | core busy "
        "| RSS MiB | instr/req | instr ×nginx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for key in order:
        row = rows.get(key)
        if row is None:
            continue
        if "rps" not in row:
            lines.append(f"| {row['label']} | {row.get('note') or 'skipped'} |" + " |" * 11)
            continue
        ir = instructions.get(key)
        is_direct = key == DIRECT
        lines.append(
            "| "
            + " | ".join(
                [
                    row["label"],
                    _fmt(row["rps"], thousands=True),
                    _ratio(row["rps"], nginx.get("rps")),
                    _ratio(row["rps"], direct.get("rps")),
                    _fmt(row["p50_ms"], 3),
                    _fmt(row["p99_ms"], 3),
                    _ratio(row["p99_ms"], nginx.get("p99_ms")),
                    _fmt(row["cpu_us_per_request"], 1) + (" ¹" if is_direct else ""),
                    "—" if is_direct else _ratio(row["cpu_us_per_request"], nginx.get("cpu_us_per_request")),
                    "—" if row.get("core_busy") is None else f"{row['core_busy'] * 100:.0f}%",
                    _fmt(row["rss_kib"] / 1024, 1) + (" ¹" if is_direct else ""),
                    "—" if ir is None else f"{ir:,.0f}",
                    _ratio(ir, nginx_ir),
                ]
            )
            + " |"
        )
        if row.get("errors"):
            notes.append(f"{row['label']}: {row['errors']} failed or non-2xx requests.")
        lpr = row.get("log_lines_per_request")
        if lpr is not None and lpr < 0.98:
            notes.append(f"{row['label']}: only {lpr:.2f} access lines per request reached the log file.")
    lines.append("")
    if DIRECT in rows:
        notes.insert(0, "¹ direct: the echo server's own CPU and memory (no proxy in the path).")

    lines.extend(f"{n}  " for n in notes)
    return lines


ON = "gatehouse"
OFF = "gatehouse-bare"


def _pooled_cost(pairs: list[tuple[dict, dict]]) -> float:
    """CPU per request with metrics and logs on over off, minus one, from
    the sums over `pairs` of (on, off) runs."""
    on = sum(a["cpu_seconds"] for a, _ in pairs) / sum(a["requests"] for a, _ in pairs)
    off = sum(b["cpu_seconds"] for _, b in pairs) / sum(b["requests"] for _, b in pairs)
    return on / off - 1


def on_off_cost(runs: list[dict], resamples: int = 2000, seed: int = 0) -> dict[str, dict]:
    """{scenario: cost of metrics and logs in CPU} from the rounds in which
    both Gatehouse configurations ran. Rounds are paired (the two ran
    minutes apart at most) and resampled with replacement for a 90%
    interval of the pooled cost, so a run says how sure it is: on a
    shared machine single rounds swing by tens of percent."""
    by_round: dict[tuple[str, int], dict[str, dict]] = {}
    for r in runs:
        if r.get("target") in (ON, OFF) and r.get("cpu_seconds") and r.get("requests"):
            by_round.setdefault((r["scenario"], r["round"]), {})[r["target"]] = r
    pairs: dict[str, list[tuple[dict, dict]]] = {}
    for (scenario, _), both in sorted(by_round.items()):
        if ON in both and OFF in both:
            pairs.setdefault(scenario, []).append((both[ON], both[OFF]))
    rng = random.Random(seed)
    out = {}
    for scenario, ps in pairs.items():
        per_round = sorted(a["cpu_seconds"] / a["requests"] / (b["cpu_seconds"] / b["requests"]) - 1 for a, b in ps)
        boot = sorted(_pooled_cost([rng.choice(ps) for _ in ps]) for _ in range(resamples))
        out[scenario] = {
            "rounds": len(ps),
            "pooled": _pooled_cost(ps),
            "low": boot[int(0.05 * (resamples - 1))],
            "high": boot[int(0.95 * (resamples - 1))],
            "round_median": statistics.median(per_round),
            "round_min": per_round[0],
            "round_max": per_round[-1],
        }
    return out


def on_off_table(
    cost: dict[str, dict],
    ir: dict[str, dict[str, float]],
    scenarios: list,
    sessions: dict | None = None,
    side: dict[str, dict] | None = None,
) -> list[str]:
    """What turning metrics and logs on costs, in instructions and in CPU.
    With several callgrind sessions (`sessions[scenario][target]`: each
    session's count), the instructions cell adds the range of each
    metrics+logs session against the median of the bare ones. `side` is
    `on_off_cost` of the side-by-side rounds (both loaded at once)."""
    side = side or {}
    rows = [
        s
        for s in scenarios
        if s.key in cost or s.key in side or (ON in ir.get(s.key, {}) and OFF in ir.get(s.key, {}))
    ]
    if not rows:
        return []

    def pct(v) -> str:
        return "—" if v is None else f"{v * 100:+.1f}%"

    lines = [
        "### Cost of metrics and logs: Gatehouse with both on against both off",
        "",
        "| scenario | instructions | CPU, side by side (rounds: lowest … highest) "
        "| CPU, rounds pooled | 90% interval | median round | rounds (lowest … highest) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scn in rows:
        c = cost.get(scn.key)
        both = ir.get(scn.key, {})
        instr = both[ON] / both[OFF] - 1 if ON in both and OFF in both else None
        each = (sessions or {}).get(scn.key, {}).get(ON, [])
        spread = (
            f" ({pct(min(each) / both[OFF] - 1)} … {pct(max(each) / both[OFF] - 1)})"
            if instr is not None and len(each) > 1
            else ""
        )
        b = side.get(scn.key)
        beside = (
            f"{pct(b['pooled'])} ({b['rounds']}: {pct(b['round_min'])} … {pct(b['round_max'])})" if b else "—"
        )
        if c is None:
            lines.append(f"| {scn.key} | {pct(instr)}{spread} | {beside} | — | — | — | — |")
            continue
        interval = f"{pct(c['low'])} … {pct(c['high'])}" if c["rounds"] >= 3 else "—"
        lines.append(
            f"| {scn.key} | {pct(instr)}{spread} | {beside} | {pct(c['pooled'])} | {interval} "
            f"| {pct(c['round_median'])} | {c['rounds']} ({pct(c['round_min'])} … {pct(c['round_max'])}) |"
        )
    lines += [
        "",
        "CPU, side by side: the two configurations on the proxy core at the same time, each loaded by its own "
        "client (`--side-by-side N` rounds), so a slow spell of the machine slows both; each runs at about half "
        "its full-speed rate. Pooled over the rounds, with the lowest and highest round.",
        "",
        "CPU, rounds pooled: the two configurations' CPU seconds over their requests, summed over the rounds in which both ran; "
        "the interval resamples those rounds (bootstrap; with the default 3 rounds it is rough). An interval that "
        "straddles a target means this run cannot tell: more, shorter rounds (`--duration 1s --rounds 30`) "
        "narrow it on a noisy machine.",
        "",
    ]
    return lines


def instructions_table(ir: dict[str, dict[str, float]], scenarios: list, order: list[str]) -> list[str]:
    """Instructions per request, scenario × proxy, with the ratio to nginx."""
    keys = [k for k in order if any(k in ir.get(s.key, {}) for s in scenarios)]
    if not keys:
        return []
    lines = [
        "### Instructions per request (callgrind), all scenarios",
        "",
        "| scenario | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for scn in scenarios:
        row = ir.get(scn.key, {})
        if not row:
            continue
        cells = []
        for k in keys:
            value = row.get(k)
            ratio = "" if k == NGINX or value is None or NGINX not in row else f" ({_ratio(value, row[NGINX])})"
            cells.append("—" if value is None else f"{value:,.0f}{ratio}")
        lines.append(f"| {scn.key} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def idle_table(rows: dict[str, dict], order: list[str], n: int) -> list[str]:
    nginx = rows.get(NGINX, {})
    lines = [
        f"### {n:,} idle keep-alive HTTP/1.1 connections (one request each, then idle)",
        "",
        "| target | RSS at start MiB | RSS before MiB | RSS with conns MiB | KiB/conn | KiB/conn ×nginx | conns open |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in order:
        row = rows.get(key)
        if row is None:
            continue
        if "kib_per_connection" not in row:
            lines.append(f"| {row['label']} | {row.get('note') or 'skipped'} |" + " |" * 5)
            continue
        lines.append(
            f"| {row['label']} | {_fmt(row.get('rss_start_kib', 0) / 1024)} | {_fmt(row['rss_before_kib'] / 1024)} "
            f"| {_fmt(row['rss_after_kib'] / 1024)} | {_fmt(row['kib_per_connection'], 2)} "
            f"| {_ratio(row['kib_per_connection'], nginx.get('kib_per_connection'))} | {row['open_at_measure']:,} |"
        )
    lines += [
        "",
        "Each target freshly started. RSS at start: right after start-up; RSS before: after 500 warm-up "
        "requests, right before the connections open; KiB/conn: (RSS with the connections open − RSS before) ÷ "
        "connections. Kernel socket buffers are not in RSS. nginx allocates and initialises all its "
        "`worker_connections` slots at start-up, so part of its cost per connection is in its start-up RSS.",
        "",
    ]
    return lines


def summarize_idle(runs: list[dict]) -> dict[str, dict]:
    grouped: dict[str, list[dict]] = {}
    for run in runs:
        grouped.setdefault(run["target"], []).append(run)
    out = {}
    for target, rows in grouped.items():
        ok = [r for r in rows if "kib_per_connection" in r]
        if not ok:
            out[target] = {"label": rows[0]["label"], "note": rows[0].get("skipped") or rows[0].get("error")}
            continue
        out[target] = {
            "label": ok[0]["label"],
            "rss_start_kib": _median([r.get("rss_start_kib") for r in ok]),
            "rss_before_kib": _median([r["rss_before_kib"] for r in ok]),
            "rss_after_kib": _median([r["rss_after_kib"] for r in ok]),
            "kib_per_connection": _median([r["kib_per_connection"] for r in ok]),
            "open_at_measure": min(r["open_at_measure"] for r in ok),
        }
    return out


def metrics_table(runs: list[dict]) -> list[str]:
    lines = ["### `/metrics` scrape, Gatehouse with 1,000 routes", ""]
    ok = [r for r in runs if r.get("available")]
    if not ok:
        reason = runs[0].get("reason", "not run") if runs else "not run"
        return lines + [f"unavailable: {reason}", ""]
    p50 = _median([r["p50_ms"] for r in ok])
    worst = max(r["max_ms"] for r in ok)
    lines += [
        "| routes | scrapes | p50 ms | max ms | body KiB | series | gateway RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {ok[0]['routes']:,} | {sum(r['scrapes'] for r in ok)} | {p50:.2f} | {worst:.2f} "
        f"| {max(r['bytes'] for r in ok) / 1024:,.0f} | {max(r['series'] for r in ok):,} "
        f"| {max(r['rss_kib'] for r in ok) / 1024:.1f} |",
        "",
    ]
    return lines


def profile_lines(rows: list, requests: int, width: int = 160) -> list[str]:
    """(instructions, function, object) rows as `instr/request  function [object]`."""
    out = []
    for ir, func, obj in rows:
        text = f"{ir / requests:>9,.0f}  {func}" + (f" [{obj}]" if obj and obj != "gatehouse" else "")
        out.append(text if len(text) <= width else text[: width - 1] + "…")
    return out
