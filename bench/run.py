"""Gateway overhead benchmark: wrk -> (gateway ->) nginx serving fixed OpenAI-format bodies.

    python bench/run.py [--duration S] [--litellm] [--portkey] [--json out.json] [--markdown]
                        [--profile bare|full|group|metrics|all] [--metrics on|off] [--docs]

    python bench/run.py --profile all --docs   # everything, and the table in docs/benchmarks.md

Every target is measured with the same request bodies, headers and wrk settings; "direct" is wrk
straight at nginx, the baseline the gateway rows are compared with. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import loadgen
import upstream
from procs import Service, can_pin, free_port, http, tool

ROOT = Path(__file__).resolve().parent.parent

# CPUs (taskset lists): the gateway's, and the load side's (wrk, nginx, PostgreSQL, Redis).
GATEWAY_CPU: int | str = 0
LOAD_CPU: int | str = 1
# Worker processes of the cluster target (several workers need Redis: the other targets run one).
WORKERS: dict[str, int] = {}
MASTER_KEY = "sk-bench-master-key"
MODES = ("non-stream", "stream")
CONCURRENCY = (1, 32)
MODEL = {"non-stream": "bench-model", "stream": "bench-model-stream"}
TARGETS = {"throughput_c32_rps": 6000.0, "added_p50_c1_ms": 0.4}


def request_body(mode: str) -> str:
    body: dict = {"model": MODEL[mode]}
    if mode == "stream":
        body["stream"] = True
    body["messages"] = [{"role": "user", "content": "Hello"}]
    return json.dumps(body, separators=(",", ":"))


HEADERS = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
# The full request path (--profile full): a virtual key with an allowed-model list, RPM/TPM limits
# and a budget, all far above what a run can reach, so every check runs and none refuses; the
# models are groups of two deployments (routing on), the usage ledger and metrics on.
FULL_KEY = {"models": ["bench-model", "bench-model-stream"], "name": "bench-full", "rpm_limit": 100_000_000,
            "tpm_limit": 1_000_000_000_000, "max_budget_usd": 1_000_000_000}
FULL_TARGET = "switchboard-full"
# The same, in cluster mode: PostgreSQL and Redis (started by the harness on the load CPU).
CLUSTER_TARGET = "switchboard-full-cluster"
FULL_MAX_LOSS = 0.25  # the full path may lose at most this share of the bare path's throughput
# What the full path must reach, one worker on one core (concurrency 32; concurrency 1 added
# latency over direct, ms).
FULL_TARGETS = {("non-stream", FULL_TARGET): 5000.0, ("stream", FULL_TARGET): 4000.0,
                ("non-stream", CLUSTER_TARGET): 3500.0, ("stream", CLUSTER_TARGET): 3500.0}
ADDED_C1_MS = {"p50": 0.5, "p99": 2.0}
# Request headers per target (or per target and mode); a target not listed uses HEADERS.
TARGET_HEADERS: dict[str, dict[str, str]] = {}
MODE_HEADERS: dict[tuple[str, str], dict[str, str]] = {}
# Requests each target completed (checks, warm-ups and measured runs), and what its usage
# ledger holds once it has stopped: nothing may be lost.
SENT: dict[str, int] = {}
LEDGER: dict[str, int] = {}
# Modes a target failed to answer correctly (its other mode is still measured), and why.
BROKEN: dict[tuple[str, str], str] = {}
# Redis commands per request of the cluster target, by command (measured after the rounds).
REDIS_PER_REQUEST: dict[str, dict[str, float]] = {}


def issue_full_key(url: str) -> tuple[str, list[str]]:
    """A virtual key for the full path, issued through the admin API with the master key.

    Returns the key and the fields the gateway did not accept (an older gateway without
    budgets answers 400 to ``max_budget_usd``: the key is issued without it, and said so)."""
    body = dict(FULL_KEY)
    dropped: list[str] = []
    for optional in ("max_budget_usd", None):
        status, _, raw = http("POST", url + "/admin/v1/keys", json.dumps(body).encode(), HEADERS, timeout=60)
        if status == 201:
            return str(json.loads(raw)["key"]), dropped
        if status != 400 or optional is None:
            break
        body.pop(optional)
        dropped.append(optional)
    raise RuntimeError(f"could not issue the full-path key: HTTP {status}: {raw[:300]!r}")


def headers_for(target: str, mode: str) -> dict[str, str]:
    return MODE_HEADERS.get((target, mode)) or TARGET_HEADERS.get(target, HEADERS)


# --- targets ------------------------------------------------------------------------------------

# A target starter takes (work dir, upstream base URL) and yields {mode: URL} while it runs.
Starter = Callable[[Path, str], contextlib.AbstractContextManager[dict[str, str]]]


@contextlib.contextmanager
def direct(root: Path, base: str) -> Iterator[dict[str, str]]:
    yield {"non-stream": base + upstream.CHAT_PATH, "stream": base + upstream.STREAM_PATH}


GROUP_TARGET = "switchboard-group"
GROUP_MAX_LOSS = 0.05  # routing over a group of two may cost at most this share against one deployment


def group_models() -> str:
    """A second deployment of each benchmark model, same upstream: the models become groups of
    two under the router's default strategy (weighted)."""
    return """\
  - name: bench-model
    provider: bench-upstream
    model: gpt-4o-mini
    deployment: second
  - name: bench-model-stream
    provider: bench-upstream-stream
    model: gpt-4o-mini
    deployment: second
"""


# Metrics on against off (--profile metrics): the same gateway with metrics.enabled false. The
# usage ledger (metadata only) is on in both; metrics may cost at most this share of throughput.
NO_METRICS_TARGET = "switchboard-nometrics"
METRICS_MAX_LOSS = 0.05
# --metrics off: every switchboard target runs with metrics.enabled false.
METRICS = {"on": True}
NO_METRICS = "metrics:\n  enabled: false\n"


def switchboard_config(base: str, group: bool = False, metrics: bool | None = None, extra: str = "") -> str:
    """The benchmark's config; ``metrics`` None: as ``--metrics`` says (on by default)."""
    on = METRICS["on"] if metrics is None else metrics
    return _config(base, group) + ("" if on else NO_METRICS) + extra


def full_config(base: str, cluster: tuple[str, str] | None = None, metrics: bool | None = None,
                database: str = "") -> str:
    """The full path's gateway: ``switchboard-full``'s config, or with ``cluster`` (database URL,
    Redis URL) ``switchboard-full-cluster``'s; the models are groups of two deployments. The one
    builder of both: bench/instructions.py's full and cluster profiles count this config, adding
    only ``database`` (lines of its database section) and its measurement settings."""
    lines = ([f"  url: {cluster[0]}\n"] if cluster is not None else []) + ([database] if database else [])
    stores = "database:\n" + "".join(lines) if lines else ""
    if cluster is not None:
        stores += f"redis:\n  url: {cluster[1]}\n"
    return switchboard_config(base, True, metrics, stores)


def _config(base: str, group: bool) -> str:
    return f"""\
providers:
  - name: bench-upstream
    type: openai
    api_base: {base}/v1
    api_key: bench-key
  - name: bench-upstream-stream
    type: openai
    api_base: {base}/stream/v1
    api_key: bench-key
models:
  - name: bench-model
    provider: bench-upstream
    model: gpt-4o-mini
  - name: bench-model-stream
    provider: bench-upstream-stream
    model: gpt-4o-mini
{group_models() if group else ""}auth:
  master_key: {MASTER_KEY}
server:
  log_level: warning
"""


@contextlib.contextmanager
def _gateway(root: Path, name: str, text: str) -> Iterator[str]:
    config = root / f"{name}.yaml"
    config.write_text(text)
    exe = shutil.which("switchboard")
    cmd = [exe] if exe else [sys.executable, "-m", "switchboard"]
    port = free_port()
    cmd += ["serve", "--config", str(config), "--port", str(port), "--workers", str(WORKERS.get(name, 1))]
    url = f"http://127.0.0.1:{port}"
    # A shared database needs the secret that keys the API-key hashes (any fixed one here).
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(root / f"{name}-data"),
           "SWITCHBOARD_SECRET_KEY": "bench-secret-key-bench-secret-key"}
    with Service(name, cmd, root / f"{name}.log", cpu=GATEWAY_CPU, env=env) as svc:
        svc.wait_ready(url + "/health/ready", timeout=30)
        yield url


@contextlib.contextmanager
def switchboard(root: Path, base: str) -> Iterator[dict[str, str]]:
    """The bare path: the master key, no limit and no budget applies (the ledger is on)."""
    with _gateway(root, "switchboard", switchboard_config(base)) as url:
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")


def _use_full_key(target: str, url: str) -> None:
    key, dropped = issue_full_key(url)
    if dropped:
        print(f"{target}: the gateway does not accept {', '.join(dropped)}; key issued without",
              file=sys.stderr)
    TARGET_HEADERS[target] = {**HEADERS, "Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def switchboard_full(root: Path, base: str) -> Iterator[dict[str, str]]:
    """The full path on the embedded default (SQLite, in-process state): a second gateway, called
    with a virtual key (FULL_KEY), its models groups of two deployments, ledger and metrics on."""
    with _gateway(root, FULL_TARGET, full_config(base)) as url:
        _use_full_key(FULL_TARGET, url)
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")
    # Stopped: the ledger's last batch is written. Count what it holds.
    import sqlite3

    with contextlib.closing(sqlite3.connect(root / f"{FULL_TARGET}-data" / "switchboard.db")) as db:
        LEDGER[FULL_TARGET] = int(db.execute("SELECT count(*) FROM usage_records").fetchone()[0])


@contextlib.contextmanager
def switchboard_full_cluster(root: Path, base: str) -> Iterator[dict[str, str]]:
    """The full path in cluster mode: the same gateway on PostgreSQL and Redis."""
    import datastores

    with datastores.cluster(LOAD_CPU) as (database, redis):
        with _gateway(root, CLUSTER_TARGET, full_config(base, (database, redis))) as url:
            _use_full_key(CLUSTER_TARGET, url)
            CLUSTER["redis"], CLUSTER["url"] = redis, url
            yield dict.fromkeys(MODES, url + "/v1/chat/completions")
        LEDGER[CLUSTER_TARGET] = datastores.count(database, "usage_records")


CLUSTER: dict[str, str] = {}


def count_redis_commands(target: str, requests: int = 2000) -> None:
    """Redis commands per request of the cluster target: INFO commandstats around ``requests``
    sequential requests per mode (background work during them, e.g. cache refreshes, included)."""
    import datastores

    url, redis = CLUSTER.get("url"), CLUSTER.get("redis")
    if url is None or redis is None:
        return
    for mode in MODES:
        before = datastores.redis_commands(redis)
        body = request_body(mode).encode()
        auth = headers_for(target, mode)
        for _ in range(requests):
            status, _, _ = http("POST", url + "/v1/chat/completions", body, auth)
            if status != 200:
                raise RuntimeError(f"{target} ({mode}): HTTP {status} while counting Redis commands")
        SENT[target] = SENT.get(target, 0) + requests
        after = datastores.redis_commands(redis)
        REDIS_PER_REQUEST[mode] = {
            name: (after[name] - before.get(name, 0)) / requests
            for name in sorted(after) if after[name] != before.get(name, 0)
        }


@contextlib.contextmanager
def switchboard_group(root: Path, base: str) -> Iterator[dict[str, str]]:
    """The bare path over a group of two deployments of each model (routing on)."""
    with _gateway(root, GROUP_TARGET, switchboard_config(base, group=True)) as url:
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")


@contextlib.contextmanager
def switchboard_nometrics(root: Path, base: str) -> Iterator[dict[str, str]]:
    """The bare path with metrics off (metrics.enabled: false), the ledger on."""
    with _gateway(root, NO_METRICS_TARGET, switchboard_config(base, metrics=False)) as url:
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")


def litellm_config(base: str) -> str:
    entries = "".join(
        f"""\
  - model_name: {MODEL[mode]}
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}{prefix}/v1
      api_key: bench-key
"""
        for mode, prefix in (("non-stream", ""), ("stream", "/stream"))
    )
    return f"model_list:\n{entries}general_settings:\n  master_key: {MASTER_KEY}\n"


def litellm_bin() -> str | None:
    """LITELLM_BIN (e.g. a separate virtualenv's bin/litellm) or ``litellm`` on PATH."""
    return os.environ.get("LITELLM_BIN") or shutil.which("litellm")


def litellm_missing() -> str | None:
    if os.environ.get("LITELLM_BIN"):
        return None if os.path.exists(os.environ["LITELLM_BIN"]) else "LITELLM_BIN does not exist"
    if importlib.util.find_spec("litellm") is None:
        return "litellm is not importable (pip install 'litellm[proxy]', or set LITELLM_BIN)"
    if shutil.which("litellm") is None:
        return "the 'litellm' command is not on PATH"
    return None


@contextlib.contextmanager
def litellm(root: Path, base: str) -> Iterator[dict[str, str]]:
    config = root / "litellm.yaml"
    config.write_text(litellm_config(base))
    port = free_port()
    cmd = [litellm_bin() or "litellm", "--config", str(config), "--port", str(port), "--num_workers", "1"]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no model-price download at start-up
    with Service("litellm", cmd, root / "litellm.log", cpu=GATEWAY_CPU, env=env) as svc:
        svc.wait_ready(url + "/health/readiness", timeout=120)
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")


def portkey_server() -> Path | None:
    """Portkey's gateway (npm ``@portkey-ai/gateway``) installed under PORTKEY_DIR."""
    where = Path(os.environ.get("PORTKEY_DIR", "/opt/portkey"))
    script = where / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    return script if script.exists() else None


def portkey_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    if portkey_server() is None:
        return ("@portkey-ai/gateway is not installed under PORTKEY_DIR (npm install --prefix DIR "
                "@portkey-ai/gateway; PORTKEY_DIR=DIR)")
    return None


@contextlib.contextmanager
def portkey(root: Path, base: str) -> Iterator[dict[str, str]]:
    """Portkey's open-source gateway on Node: the provider and upstream are named per request
    (x-portkey-provider, x-portkey-custom-host), the upstream key sent as the caller's."""
    port = free_port()
    cmd = [shutil.which("node") or "node", str(portkey_server()), f"--port={port}", "--headless"]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NODE_ENV": "production"}
    for mode, prefix in (("non-stream", ""), ("stream", "/stream")):
        MODE_HEADERS[("portkey", mode)] = {
            "Authorization": "Bearer bench-key", "Content-Type": "application/json",
            "x-portkey-provider": "openai", "x-portkey-custom-host": f"{base}{prefix}/v1",
        }
    with Service("portkey", cmd, root / "portkey.log", cpu=GATEWAY_CPU, env=env) as svc:
        ready = url + "/v1/chat/completions"
        svc.wait_ready(ready, timeout=60, method="POST", body=request_body("non-stream"),
                       headers=MODE_HEADERS[("portkey", "non-stream")])
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")


@contextlib.contextmanager
def minimal(root: Path, base: str) -> Iterator[dict[str, str]]:
    """bench/minimal_proxy.py: the floor any Python proxy on this stack pays."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "minimal_proxy:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "MINIMAL_UPSTREAM": base, "PYTHONPATH": str(Path(__file__).parent)}
    url = f"http://127.0.0.1:{port}"
    with Service("minimal", cmd, root / "minimal.log", cpu=GATEWAY_CPU, env=env) as svc:
        svc.wait_ready(url + "/health", timeout=30, method="POST", body=request_body("non-stream"))
        yield dict.fromkeys(MODES, url + "/v1/chat/completions")


STARTERS: dict[str, Starter] = {
    "direct": direct,
    "minimal": minimal,
    "switchboard": switchboard,
    FULL_TARGET: switchboard_full,
    CLUSTER_TARGET: switchboard_full_cluster,
    GROUP_TARGET: switchboard_group,
    NO_METRICS_TARGET: switchboard_nometrics,
    "litellm": litellm,
    "portkey": portkey,
}
MISSING: dict[str, Callable[[], str | None]] = {"litellm": lambda: litellm_missing(),
                                                "portkey": lambda: portkey_missing()}


def check(url: str, mode: str, auth: dict[str, str] = HEADERS) -> None:
    """One request before measuring: the target must answer correctly, or its numbers mean nothing."""
    status, headers, raw = http("POST", url, request_body(mode).encode(), auth)
    ctype = headers.get("content-type", "")
    want = upstream.CONTENT_TEXT
    if status != 200:
        raise RuntimeError(f"{url} ({mode}): HTTP {status}: {raw[:500]!r}")
    try:
        if mode == "non-stream":
            content = json.loads(raw)["choices"][0]["message"]["content"]
            ok = ctype.startswith("application/json") and content == want
        else:
            events = [ln[6:] for ln in raw.decode().splitlines() if ln.startswith("data: ")]
            chunks = [json.loads(e) for e in events if e != "[DONE]"]
            content = "".join(c["delta"].get("content") or "" for ch in chunks for c in ch["choices"])
            ok = ctype.startswith("text/event-stream") and events[-1:] == ["[DONE]"] and content == want
    except (ValueError, LookupError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise RuntimeError(f"{url} ({mode}): unexpected response ({ctype}): {raw[:500]!r}")


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Row:
    target: str
    mode: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    requests: int
    errors: int
    rps_vs_direct: float | None = None
    added_p50_ms: float | None = None
    round: int = 0  # the round a measurement was taken in (0: a median over rounds)

    @property
    def scenario(self) -> str:
        return f"{self.target} {self.mode} c={self.concurrency}"


def prepare(target: str, urls: dict[str, str], root: Path) -> dict[str, Path]:
    """Check each mode of ``target`` once and write its wrk script; a mode that answers wrongly is
    left out (BROKEN) and the other one is still measured."""
    scripts = {}
    for mode in MODES:
        if (target, mode) in BROKEN:
            continue
        auth = headers_for(target, mode)
        try:
            check(urls[mode], mode, auth)
        except RuntimeError as exc:  # one mode broken (e.g. a gateway's streaming): measure the other
            print(f"{target} {mode} FAILED: {exc}", file=sys.stderr)
            BROKEN[(target, mode)] = str(exc)[:300]
            continue
        SENT[target] = SENT.get(target, 0) + 1
        script = root / f"{target}-{mode}.lua"
        script.write_text(loadgen.lua_script(request_body(mode), auth))
        scripts[mode] = script
    return scripts


def measure(
    target: str, url: str, script: Path, mode: str, conc: int, round_no: int, args: argparse.Namespace
) -> Row:
    """One scenario of one target: warm up, then measure."""
    if args.warmup > 0:
        warm = loadgen.wrk(url, script, connections=conc, duration=args.warmup, cpu=LOAD_CPU)
        SENT[target] = SENT.get(target, 0) + warm.requests
    res = loadgen.wrk(url, script, connections=conc, duration=args.duration, cpu=LOAD_CPU)
    SENT[target] = SENT.get(target, 0) + res.requests
    row = Row(target, mode, conc, res.rps, res.p50_ms, res.p90_ms, res.p99_ms, res.mean_ms,
              res.requests, res.errors, round=round_no)
    print(
        f"  {row.scenario:<40} {row.rps:>9,.0f} req/s  p50 {row.p50_ms:.3f} ms  "
        f"p99 {row.p99_ms:.3f} ms" + (f"  ERRORS {row.errors}" if row.errors else ""),
        flush=True,
    )
    return row


def run_rounds(
    started: dict[str, dict[str, str]], scripts: dict[str, dict[str, Path]], rounds: int,
    failed: list[str], args: argparse.Namespace, only: set[str] | None = None, first: int = 1,
) -> list[Row]:
    """Every round measures each scenario on every target back to back (the order of the targets
    reversed every other round), so a target and the minimal proxy it is compared with are
    measured seconds apart, not minutes: this machine drifts by tens of percent within minutes.
    ``only`` limits the rounds to those scenarios (and the minimal proxy's of the same mode and
    concurrency); their rounds are numbered from ``first``."""
    measured: list[Row] = []
    for round_no in range(first, first + rounds):
        order = list(started) if round_no % 2 else list(reversed(started))
        print(f"round {round_no}/{first + rounds - 1}:", flush=True)
        for mode in MODES:
            for conc in CONCURRENCY:
                for target in order:
                    script = scripts[target].get(mode)
                    if target in failed or script is None:
                        continue
                    if only is not None and not _wanted(only, target, mode, conc):
                        continue
                    try:
                        measured.append(measure(target, started[target][mode], script, mode, conc,
                                                round_no, args))
                    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                        print(f"{target} FAILED: {exc}", file=sys.stderr)
                        failed.append(target)
    return measured


def _wanted(only: set[str], target: str, mode: str, conc: int) -> bool:
    """Whether a scenario is among ``only``, or is the minimal proxy's yardstick of one."""
    if target == "minimal":
        return any(s.endswith(f" {mode} c={conc}") for s in only)
    return f"{target} {mode} c={conc}" in only


def medians(rows: list[Row]) -> list[Row]:
    """One row per target and scenario: the median of each figure over the rounds."""
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.target, row.mode, row.concurrency), []).append(row)
    out = []
    for (target, mode, conc), group in groups.items():

        def mid(name: str, group: list[Row] = group) -> float:
            return statistics.median(getattr(r, name) for r in group)

        out.append(
            Row(
                target,
                mode,
                conc,
                mid("rps"),
                mid("p50_ms"),
                mid("p90_ms"),
                mid("p99_ms"),
                mid("mean_ms"),
                sum(r.requests for r in group),
                sum(r.errors for r in group),
            )
        )
    return out


def compare(rows: list[Row]) -> None:
    base = {(r.mode, r.concurrency): r for r in rows if r.target == "direct"}
    for r in rows:
        d = base.get((r.mode, r.concurrency))
        if r.target != "direct" and d is not None:
            r.rps_vs_direct = r.rps / d.rps if d.rps else None
            r.added_p50_ms = r.p50_ms - d.p50_ms


# --- the regression guard ------------------------------------------------------------------------
#
# Throughput drifts with the machine, so a tree is compared with a stored baseline not in
# requests/s but as each gateway target's ratio to the minimal proxy measured in the same round,
# seconds apart (run_rounds): a change that slows the hot path moves that ratio, a slower machine
# does not. The ratio kept is the median over the rounds of the per-round ratios, which cancels
# the drift between rounds that a ratio of two medians would keep.


def round_ratios(measured: list[Row]) -> dict[str, list[float]]:
    """``"<target> <mode> c=<concurrency>"`` -> its requests/s over the minimal proxy's in each
    round (the same scenario, measured back to back)."""
    proxy = {(r.round, r.mode, r.concurrency): r.rps for r in measured if r.target == "minimal"}
    out: dict[str, list[float]] = {}
    for r in measured:
        yardstick = proxy.get((r.round, r.mode, r.concurrency))
        if r.target.startswith("switchboard") and yardstick:
            out.setdefault(r.scenario, []).append(r.rps / yardstick)
    return out


def proxy_ratios(measured: list[Row]) -> dict[str, float]:
    """Each gateway scenario's median per-round ratio to the minimal proxy."""
    return {scenario: statistics.median(ratios) for scenario, ratios in round_ratios(measured).items()}


def check_baseline(measured: list[Row], baseline: dict[str, float], tolerance: float,
                   quiet: bool = False) -> list[str]:
    """The scenarios more than ``tolerance`` percent slower than the baseline, relative to the
    minimal proxy (each printed unless ``quiet``, with the ones within it and the spread over the
    rounds)."""
    slower = []
    for scenario, ratios in sorted(round_ratios(measured).items()):
        ratio = statistics.median(ratios)
        before = baseline.get(scenario)
        if not before:
            if not quiet:
                print(f"  {scenario}: no baseline")
            continue
        change = (ratio / before - 1) * 100
        verdict = "SLOWER" if change < -tolerance else "ok"
        spread = f"{len(ratios)} rounds {min(ratios):.3f}..{max(ratios):.3f}"
        if not quiet:
            print(f"  {scenario}: {ratio:.3f} of the minimal proxy, {spread} "
                  f"(baseline {before:.3f}, {change:+.1f} %) {verdict}")
        if verdict != "ok":
            slower.append(scenario)
    return slower


# --- reporting ----------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        version = importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "switchboard": version,
        "nginx": _first_line([tool("nginx"), "-v"]).rpartition("/")[2],
        "wrk": _first_line([tool("wrk"), "-v"]).split(" Copyright")[0].removeprefix("wrk "),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: list[Row], markdown: bool) -> str:
    head = ["Scenario", "req/s", "p50 ms", "p99 ms", "vs direct", "+p50 ms", "errors"]
    body = [
        [
            r.scenario,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.3f}",
            f"{r.p99_ms:.3f}",
            _fmt(r.rps_vs_direct, ".2f") + ("x" if r.rps_vs_direct is not None else ""),
            _fmt(r.added_p50_ms, "+.3f"),
            str(r.errors),
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]])
    return "\n".join(
        [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body]
    )


def verdicts(rows: list[Row]) -> list[str]:
    out = []
    bare = {(r.mode, r.concurrency): r for r in rows if r.target == "switchboard"}
    direct = {(r.mode, r.concurrency): r for r in rows if r.target == "direct"}
    metrics_off = {(r.mode, r.concurrency): r for r in rows if r.target == NO_METRICS_TARGET}
    for r in rows:
        b = bare.get((r.mode, r.concurrency))
        goal = FULL_TARGETS.get((r.mode, r.target))
        if goal is not None and r.concurrency == 32:
            out.append(f"{r.scenario}: {r.rps:,.0f} req/s (target >= {goal:,.0f}): "
                       f"{'PASS' if r.rps >= goal else 'FAIL'}")
        if r.target == FULL_TARGET and r.concurrency == 1 and r.added_p50_ms is not None:
            d = direct.get((r.mode, 1))
            added99 = r.p99_ms - d.p99_ms if d is not None else float("nan")
            ok = r.added_p50_ms <= ADDED_C1_MS["p50"] and added99 <= ADDED_C1_MS["p99"]
            out.append(f"{r.scenario}: {r.added_p50_ms:+.3f} ms p50, {added99:+.3f} ms p99 over direct "
                       f"(target <= {ADDED_C1_MS['p50']} / {ADDED_C1_MS['p99']} ms): "
                       f"{'PASS' if ok else 'FAIL'}")
        if r.target == FULL_TARGET and r.concurrency == 32 and b is not None and b.rps:
            loss = 1 - r.rps / b.rps
            ok = loss <= FULL_MAX_LOSS
            out.append(f"{r.scenario}: {r.rps:,.0f} req/s, {loss:.1%} below the bare path's {b.rps:,.0f} "
                       f"(target <= {FULL_MAX_LOSS:.0%}): {'PASS' if ok else 'FAIL'}")
        if r.target == GROUP_TARGET and r.concurrency == 32 and b is not None and b.rps:
            loss = 1 - r.rps / b.rps
            ok = loss <= GROUP_MAX_LOSS
            out.append(f"{r.scenario}: {r.rps:,.0f} req/s, {loss:.1%} below one deployment's {b.rps:,.0f} "
                       f"(target <= {GROUP_MAX_LOSS:.0%}): {'PASS' if ok else 'FAIL'}")
        off = metrics_off.get((r.mode, r.concurrency))
        if r.target == "switchboard" and r.concurrency == 32 and off is not None and off.rps:
            loss = 1 - r.rps / off.rps
            ok = loss <= METRICS_MAX_LOSS
            out.append(f"{r.scenario}: metrics on {r.rps:,.0f} req/s, {loss:.1%} below metrics off "
                       f"{off.rps:,.0f} (target <= {METRICS_MAX_LOSS:.0%}): {'PASS' if ok else 'FAIL'}")
        if r.target != "switchboard":
            continue
        if r.concurrency == 32:
            ok = r.rps >= TARGETS["throughput_c32_rps"]
            out.append(f"{r.scenario}: {r.rps:,.0f} req/s (target >= 6,000): {'PASS' if ok else 'FAIL'}")
        if r.concurrency == 1 and r.added_p50_ms is not None:
            ok = r.added_p50_ms <= TARGETS["added_p50_c1_ms"]
            out.append(
                f"{r.scenario}: {r.added_p50_ms:+.3f} ms p50 vs direct (target <= 0.4 ms): "
                f"{'PASS' if ok else 'FAIL'}"
            )
    return out


def report(rows: list[Row], info: dict[str, str], args: argparse.Namespace) -> None:
    print("\n" + table(rows, markdown=False))
    for line in verdicts(rows):
        print("  " + line)
    if args.markdown:
        print()
        print(f"- CPU: {info['cpu']}, {info['cores']} cores")
        print(f"- {info['kernel']}; {info['python']}; switchboard {info['switchboard']}")
        print(f"- nginx {info['nginx']}; wrk {info['wrk']}")
        pin = f"gateway on CPU {GATEWAY_CPU}, wrk and nginx on CPU {LOAD_CPU}" if can_pin() else "not pinned"
        print(f"- {args.duration:g} s measured after {args.warmup:g} s warm-up per scenario; {pin}\n")
        print(table(rows, markdown=True))


def extra_lines() -> list[str]:
    """The ledger count of the full targets, and the cluster target's Redis commands per request."""
    out = []
    for target, stored in LEDGER.items():
        sent = SENT.get(target, 0)
        ok = stored >= sent
        out.append(f"{target}: {sent:,} requests completed, {stored:,} records in the usage ledger after the "
                   f"run (in-flight requests cut when a run ended are recorded too): "
                   f"{'nothing lost' if ok else f'{sent - stored:,} MISSING'}")
    for (target, mode), why in BROKEN.items():
        out.append(f"{target} {mode}: not measured, it failed: {why}")
    for mode, calls in REDIS_PER_REQUEST.items():
        total = sum(calls.values())
        detail = ", ".join(f"{name} {n:.2f}" for name, n in calls.items())
        out.append(f"{CLUSTER_TARGET} {mode}: {total:.2f} Redis commands per request ({detail})")
    return out


DOCS_BEGIN, DOCS_END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def write_docs(rows: list[Row], info: dict[str, str], args: argparse.Namespace, argv: list[str]) -> None:
    """Rewrite the results block of docs/benchmarks.md from this run."""
    import re

    pin = f"gateway on CPU {GATEWAY_CPU}; wrk, nginx (and PostgreSQL, Redis) on CPU {LOAD_CPU}" \
        if can_pin() else "not pinned"
    lines = [
        DOCS_BEGIN,
        f"`python bench/run.py {' '.join(argv)}` on {time.strftime('%Y-%m-%d')}:",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; {info['kernel']}; {info['python']}",
        f"- switchboard {info['switchboard']}; nginx {info['nginx']}; wrk {info['wrk']}",
        f"- {args.duration:g} s measured after {args.warmup:g} s warm-up per scenario, {args.rounds} "
        f"interleaved rounds (medians); {pin}",
        "",
        table(rows, markdown=True),
        "",
        *[f"- {line}" for line in verdicts(rows) + extra_lines()],
        DOCS_END,
    ]
    block = "\n".join(lines)
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    if DOCS_BEGIN not in text:
        raise SystemExit(f"{path} has no {DOCS_BEGIN} marker")
    text = re.sub(re.escape(DOCS_BEGIN) + ".*?" + re.escape(DOCS_END), lambda _: block, text, flags=re.S)
    path.write_text(text)
    print(f"results written to {path}")


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each run")
    parser.add_argument("--litellm", action="store_true", help="also measure LiteLLM's proxy if installed")
    parser.add_argument("--portkey", action="store_true", help="also measure Portkey's gateway if installed")
    parser.add_argument(
        "--targets",
        default="direct,minimal,switchboard",
        help="comma-separated targets among direct,minimal,switchboard,switchboard-full,switchboard-group,"
        "switchboard-nometrics,switchboard-full-cluster,litellm,portkey "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        choices=("bare", "full", "group", "metrics", "all"),
        default="bare",
        help="full: also measure the full request path (a virtual key with RPM/TPM limits and a "
        "budget, target switchboard-full) against the bare path (the master key) in the same run; "
        "group: routing over a group of two deployments (target switchboard-group) against one; "
        "metrics: the bare path with metrics off (target switchboard-nometrics) against metrics on; "
        "all: direct, minimal, the bare path, the full path embedded and in cluster mode "
        "(PostgreSQL + Redis), LiteLLM and Portkey where installed, the ledger counted after the "
        "run and Redis commands per request",
    )
    parser.add_argument("--metrics", choices=("on", "off"), default="on",
                        help="Prometheus metrics of the switchboard targets (default on; the "
                        "switchboard-nometrics target has them off either way)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write machine info and results as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table for the docs")
    parser.add_argument("--save-baseline", type=Path, metavar="FILE",
                        help="store each gateway target's ratio to the minimal proxy, for --baseline later")
    parser.add_argument("--baseline", type=Path, metavar="FILE",
                        help="compare with a stored baseline; exit 1 if a scenario is more than "
                        "--tolerance percent slower relative to the minimal proxy")
    parser.add_argument("--tolerance", type=float, default=10.0, help="percent (default 10)")
    parser.add_argument("--confirm", type=int, default=3, metavar="N",
                        help="with --baseline: measure a scenario found slower N more rounds (with "
                        "the minimal proxy) and judge it on all its rounds; 0 judges at once (default 3)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of the cluster target (give it as many CPUs: --gateway-cpus)")
    parser.add_argument("--gateway-cpus", default="0", help="taskset CPU list of the gateways (default 0)")
    parser.add_argument("--load-cpus", default="1",
                        help="taskset CPU list of wrk, nginx, PostgreSQL and Redis (default 1)")
    parser.add_argument("--docs", action="store_true",
                        help="rewrite the results table of docs/benchmarks.md (between its markers)")
    args = parser.parse_args(argv)

    global GATEWAY_CPU, LOAD_CPU
    GATEWAY_CPU, LOAD_CPU = args.gateway_cpus, args.load_cpus
    WORKERS[CLUSTER_TARGET] = args.workers
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.profile == "all":
        targets = ["direct", "minimal", "switchboard", FULL_TARGET, CLUSTER_TARGET, "litellm", "portkey"]
    for wanted in ("litellm", "portkey"):
        if getattr(args, wanted) and wanted not in targets:
            targets.append(wanted)
    METRICS["on"] = args.metrics == "on"
    if args.profile in ("full", "group", "metrics") and args.profile != "all":
        extra = {"full": FULL_TARGET, "group": GROUP_TARGET, "metrics": NO_METRICS_TARGET}[args.profile]
        targets += [t for t in ("switchboard", extra) if t not in targets]
    unknown = set(targets) - STARTERS.keys()
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if "direct" not in targets:
        targets.insert(0, "direct")  # the baseline every other row is compared with
    if (args.baseline or args.save_baseline) and "minimal" not in targets:
        targets.insert(1, "minimal")  # the yardstick of the regression guard

    # SIGTERM unwinds like Ctrl-C, so every `with` below stops its processes and removes its files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if not can_pin():
        print("warning: taskset missing or fewer than 2 CPUs: processes are NOT pinned", file=sys.stderr)

    rows: list[Row] = []
    measured: list[Row] = []
    judged: list[Row] = []  # measured, and the rounds that confirmed a flagged scenario
    failed: list[str] = []
    # Read before --save-baseline may rewrite the same file: the check is against the old tree.
    stored = json.loads(args.baseline.read_text()) if args.baseline else None
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        root = Path(tmp)
        nginx, base = upstream.nginx(root / "nginx", cpu=LOAD_CPU)
        with nginx, contextlib.ExitStack() as running:
            nginx.wait_ready(base + upstream.CHAT_PATH, timeout=10)
            # Every target runs for the whole benchmark (idle ones cost nothing) and the rounds
            # interleave them, so a drift in the machine's speed hits all targets alike.
            started: dict[str, dict[str, str]] = {}
            for target in targets:
                missing = MISSING[target]() if target in MISSING else None
                if missing:
                    print(f"skipping {target}: {missing}")
                    continue
                try:
                    started[target] = running.enter_context(STARTERS[target](root, base))
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    print(f"{target} FAILED to start: {exc}", file=sys.stderr)
                    failed.append(target)
            scripts = {target: prepare(target, urls, root) for target, urls in started.items()
                       if target not in failed}
            measuring = {t: u for t, u in started.items() if t in scripts}
            measured = run_rounds(measuring, scripts, args.rounds, failed, args)
            rows = medians(measured)
            # A scenario the baseline flags is measured again before the verdict: on a shared
            # machine one slow stretch can flag a scenario in a run of three rounds.
            judged = measured
            flagged = (check_baseline(measured, stored, args.tolerance, quiet=True)
                       if stored is not None and args.confirm > 0 else [])
            if flagged:
                print(f"confirming {', '.join(flagged)} with {args.confirm} more rounds", flush=True)
                judged = measured + run_rounds(measuring, scripts, args.confirm, failed, args,
                                               only=set(flagged), first=args.rounds + 1)
            if CLUSTER_TARGET in started and CLUSTER_TARGET not in failed:
                count_redis_commands(CLUSTER_TARGET)

    compare(rows)
    report(rows, info, args)
    for line in extra_lines():
        print("  " + line)
    if args.docs:
        write_docs(rows, info, args, argv if argv is not None else sys.argv[1:])
    if args.json:
        settings = {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "profile": args.profile,
            "pinned": can_pin(),
            "gateway_cpu": GATEWAY_CPU,
            "load_cpu": LOAD_CPU,
            "targets": TARGETS,
        }
        doc = {"machine": info, "settings": settings, "results": [asdict(r) for r in rows],
               "rounds": [asdict(r) for r in measured], "failed": failed,
               "sent": SENT, "ledger": LEDGER, "redis_per_request": REDIS_PER_REQUEST}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.save_baseline:
        args.save_baseline.write_text(json.dumps(proxy_ratios(measured), indent=2, sort_keys=True) + "\n")
        print(f"baseline written to {args.save_baseline}")
    if args.baseline and stored is not None:
        print(f"against the baseline {args.baseline} (tolerance {args.tolerance:g} %):")
        slower = check_baseline(judged, stored, args.tolerance)
        if slower:
            print(f"SLOWER than the baseline: {', '.join(slower)}", file=sys.stderr)
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; processes stopped and temp files removed", file=sys.stderr)
        sys.exit(130)
