"""The load generator: wrk with a Lua script that sets the POST request and reports JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from procs import pinned, run, tool

_MARK = "WRK_RESULT "

# wrk calls done() once at the end with the merged statistics; latencies are in microseconds.
_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%.1f,"p50":%.1f,"p90":%.1f,"p99":%.1f}}\\n',
    MARK, summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def _lua_string(text: str) -> str:
    if "]==]" in text:
        raise ValueError("request body must not contain ']==]'")
    return f"[==[{text}]==]"


def lua_script(body: str, headers: Mapping[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    lines.append(f"MARK = {_lua_string(_MARK)}")
    return "\n".join(lines) + "\n" + _DONE


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse(output: str) -> Result:
    line = next((ln for ln in output.splitlines() if ln.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    data = json.loads(line[len(_MARK) :])
    lat = {k: v / 1000.0 for k, v in data["latency_us"].items()}
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=sum(data["errors"].values()),
        p50_ms=lat["p50"],
        p90_ms=lat["p90"],
        p99_ms=lat["p99"],
        mean_ms=lat["mean"],
        max_ms=lat["max"],
    )


def wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    duration: float,
    cpu: int | str | None,
    threads: int = 1,
) -> Result:
    seconds = max(1, round(duration))
    cmd = [
        tool("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    return parse(run(pinned(cmd, cpu), timeout=seconds + 60))
