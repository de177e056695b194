"""Instructions per request: the gateway's cost, counted rather than timed.

Throughput on a shared virtual machine drifts by ±20 % within minutes, which hides a change of a
few percent. Counting the CPU instructions the gateway process executes per request (valgrind's
callgrind, C code of uvloop, httptools, aiohttp and orjson included) gives the same figure to
within about 0.2 % run after run, so two source trees can be compared exactly:

    python bench/instructions.py                          # this checkout
    python bench/instructions.py --src /path/to/other/src # another tree (e.g. a git worktree)
    python bench/instructions.py --key-cost               # an API key against the master key
    python bench/instructions.py --profile full           # the full path (run.py's switchboard-full)
                                                          # against the bare path
    python bench/instructions.py --profile cluster        # the full path in cluster mode (run.py's
                                                          # switchboard-full-cluster) against embedded
    python bench/instructions.py --profile group          # a group of two deployments against one
    python bench/instructions.py --profile metrics        # Prometheus metrics on against off
    python bench/instructions.py --metrics off            # this checkout with metrics off
    python bench/instructions.py --defer-flush            # the request path alone, no database write
    python bench/instructions.py --profile full --defer-flush --baseline bench/instructions-baseline.json
                                                          # exit 1 if a count grew past the tolerance
    python bench/instructions.py --profile full --keep /tmp/cg  # callgrind's output kept, per gateway
                                                          # (callgrind_annotate /tmp/cg/callgrind-...)

The gateway runs under callgrind with instrumentation off while it starts and warms up; only
the measured requests are counted (sequential keep-alive requests to the same nginx upstream as
bench/run.py, one worker). The full path's gateway is bench/run.py's switchboard-full, built by
the same function (``run.full_config``: a virtual key with allowed models, RPM/TPM limits and a
budget, the ledger, metrics, its models groups of two deployments); the cluster profile's is
switchboard-full-cluster's. Only measurement settings are added. Its caches of keys, limits and
budgets are filled in the warm-up and not read again inside the window
(``database.cache_seconds: 3600``, which the periodic re-reads of the model table, of the count
of keys without a check and of the stored MCP servers follow too: reloads every 10 s of
wall-clock time made a count follow the machine's load), the batch poller's round and the
look for expired key chains are an hour apart (``files.poll_seconds``,
``budgets.expired_keys_seconds``), and the periodic work each window still holds (database calls,
SQLite schema loads, read from callgrind's output) is printed with the counts. The usage
ledger's database writes are counted too, but sequential requests slowed some fifty-fold leave
only a handful of records per 0.5 s flush, so the flush's fixed cost weighs far more per request
than under load; ``--defer-flush`` leaves them out (flush
every 60 s or 10,000 records), with the keys' last-used writes (every hour instead of every 5 s),
and ``bench/ledger.py`` measures the flush per record by batch size.

``--profile cluster`` measures the full path twice in one run: on the embedded default (SQLite,
in-process state) and in cluster mode (PostgreSQL and Redis, fresh servers started as
``bench/run.py``'s cluster target starts them, on its load CPU). Only the gateway process is
counted, so the difference is the cluster stores' client side: the Redis scripts' arguments,
their encoding and the replies (stores/redis/), the change feed's reader, and the ledger's
PostgreSQL writes (left out with ``--defer-flush``).
Needs valgrind (Debian package ``valgrind``) and nginx; PostgreSQL and Redis for ``cluster``.
Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import run as harness
import upstream
from procs import free_port, tool

WARMUP = 50


def _wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health/ready")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not become ready within {timeout:.0f} s")
        time.sleep(0.2)  # polling a process that starts slowly under valgrind


class OneWrite(http.client.HTTPConnection):
    """``http.client``'s connection with each request's head and body in one send: the same
    bytes, but it writes them in two, and whether the body then came in a socket read of its own
    followed timing (some tens of 300 requests, about 40,000 instructions each: the read, the
    body timer, the application waiting for the body), which moved one tree's count by up to
    1 % between runs. In one write, as wrk and the load generators send them, every request
    takes the same read path in the gateway."""

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if not isinstance(message_body, bytes) or encode_chunked:
            super()._send_output(message_body, encode_chunked)
            return
        self._buffer.extend((b"", b""))  # the head's lines, as in http.client
        head = b"\r\n".join(self._buffer)
        del self._buffer[:]
        self.send(head + message_body)


def instrument(pid: int, state: str) -> None:
    subprocess.run([tool("callgrind_control"), "-i", state, str(pid)], check=True, capture_output=True)


def _total(out: Path) -> int:
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def _issue_key(port: int) -> str:
    """An API key for the benchmark model, issued with the master key (the admin API)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"models": list(harness.MODEL.values()), "name": "bench"}).encode()
    conn.request("POST", "/admin/v1/keys", body, harness.HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 201:
        raise RuntimeError(f"could not issue a key: HTTP {resp.status}: {data[:300]!r}")
    return str(json.loads(data)["key"])


# The budget counters' "Redis lost its data" marker (stores/redis/budgets.py's LOST_MARKER).
LOST_MARKER = "sb:bg:{bg}:since"
# The cluster profile's secret (any fixed one: its database is fresh each run).
CLUSTER_SECRET = "bench-secret-key-bench-secret-key"


# The request path's caches (keys, limits, budgets, subscriptions) are read again when their
# entries expire, after database.cache_seconds (10 s by default) of wall-clock time: under
# callgrind the measured window lasts a minute or more, and how many reloads fell in it (0 to 50,
# a few million instructions each) followed the machine's load, moving a count by up to 5 %.
# An hour keeps them out of every window: what is counted is each request's own work.
CACHE_SECONDS = 3600
# Periodic work seen in callgrind's output, by a substring of the function's name: what each
# measured window held besides the requests, printed with the counts so runs compare honestly.
PERIODIC = {
    "database calls": "g_initialstub",  # a greenlet started per SQLAlchemy async call
    "SQLite schema loads": "sqlite3InitOne",
}


# The batch poller's first round (files.poll_seconds, 60 s after the start) an hour away: three
# database calls that fell in a window or not depending on how long the start under callgrind took.
QUIET_POLLER = f"files:\n  poll_seconds: {CACHE_SECONDS}\n"
# The look for key chains whose keys all expired (budgets.expired_keys_seconds, every 10 s by
# default, one database call each) an hour apart too: a loaded machine's longer window held up
# to seven of them, some 30,000 instructions a request on both paths.
QUIET_CHAINS = f"budgets:\n  expired_keys_seconds: {CACHE_SECONDS}\n"


def _accepts(src: Path, config: str, key: str, module: str = "server") -> bool:
    """Whether the tree's configuration class ``config`` (switchboard.config.``module``) takes
    ``key`` (trees from before ``database.cache_seconds`` refuse it, and their caches reload every
    10 s inside the window)."""
    probe = (f"from switchboard.config.{module} import {config} as C;"
             f"print({key!r} in C.model_fields)")
    found = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(src)},
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() == "True"


def periodic_calls(out: Path) -> dict[str, int]:
    """How many times each of ``PERIODIC``'s functions was called in the window, read from
    callgrind's output (``cfn=`` names the callee of the next ``calls=`` line; a name is given in
    full once, then by its number)."""
    names: dict[str, str] = {}
    found = dict.fromkeys(PERIODIC, 0)
    for path in out.parent.glob(out.name + "*"):
        callee = ""
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("fn=(", "cfn=(")):
                number, _, name = line.partition("=")[2].partition(" ")
                name = names.setdefault(number, name)
                callee = name if line[0] == "c" else ""
            elif line.startswith("calls=") and callee:
                for what, needle in PERIODIC.items():
                    if needle in callee:
                        found[what] += int(line[6:].split()[0])
    return found


DEFERRED_FLUSH = "spend:\n  flush_seconds: 60\n  flush_batch: 10000\n"
# Keys' last-used times are written every 5 s: whether the measured window holds two or three of
# those writes (some 15 million instructions each under callgrind) would decide a 5 % difference.
DEFERRED_TOUCH = "auth:\n  last_used_interval_seconds: 3600\n"


def measure(
    src: Path, mode: str, requests: int, root: Path, base: str, *, api_key: bool = False, full: bool = False,
    defer_flush: bool = False, group: bool = False, metrics: bool = True, keep: Path | None = None,
    cluster: tuple[str, str] | None = None, cache: bool = True, poller: bool = True, chains: bool = True,
) -> tuple[float, dict[str, int]]:
    """Instructions per request; ``api_key``: a plain issued key; ``full``: the full path,
    bench/run.py's switchboard-full (``run.full_config``: its key with RPM/TPM limits and a budget,
    ``run.FULL_KEY``, its models groups of two deployments), or with ``cluster`` (database URL,
    Redis URL) switchboard-full-cluster; ``group``: the bare path with each model a group of two
    deployments on the same upstream (weighted strategy); ``metrics``: Prometheus metrics on;
    ``cache``: the tree takes ``database.cache_seconds``; ``poller``: it takes
    ``files.poll_seconds``; ``chains``: it takes ``budgets.expired_keys_seconds``. Also how many
    times ``PERIODIC``'s work ran in the window."""
    who = "full" if full else "key" if api_key else "master"
    tag = (f"{mode}-{who}{'-group' if group and not full else ''}"
           f"{'' if metrics else '-nometrics'}{'-cluster' if cluster else ''}")
    config = root / f"switchboard-{tag}.yaml"
    caches = f"  cache_seconds: {CACHE_SECONDS}\n" if cache else ""
    if full:
        text = harness.full_config(base, cluster, metrics, caches)
    else:
        text = harness.switchboard_config(base, group, metrics, "database:\n" + caches if caches else "")
    if poller:
        text += QUIET_POLLER
    if chains:
        text += QUIET_CHAINS
    if defer_flush:
        text = text.replace("auth:\n", DEFERRED_TOUCH, 1) + DEFERRED_FLUSH
    config.write_text(text)
    port = free_port()
    out = root / f"callgrind-{tag}.out"
    env = {**os.environ, "PYTHONPATH": str(src), "SWITCHBOARD_DATA_DIR": str(root / f"data-{tag}")}
    if cluster is not None:  # a shared database needs the secret that keys the API-key hashes
        env["SWITCHBOARD_SECRET_KEY"] = CLUSTER_SECRET
    cmd = [
        tool("valgrind"), "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port", str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, timeout=300)
        body = harness.request_body(mode).encode()
        headers = dict(harness.HEADERS)
        if api_key:
            headers["Authorization"] = f"Bearer {_issue_key(port)}"
        if full:
            key, dropped = harness.issue_full_key(f"http://127.0.0.1:{port}")
            if dropped:
                print(f"  (the gateway does not accept {', '.join(dropped)}: key issued without)", flush=True)
            headers["Authorization"] = f"Bearer {key}"
        conn = OneWrite("127.0.0.1", port, timeout=60)

        def one() -> None:
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")

        for _ in range(WARMUP):
            one()
        instrument(proc.pid, "on")
        for _ in range(requests):
            one()
        instrument(proc.pid, "off")
    finally:
        proc.terminate()
        proc.wait(120)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for path in out.parent.glob(out.name + "*"):
            shutil.copy(path, keep / path.name)
    return _total(out) / requests, periodic_calls(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src",
                        help="the source tree to measure (the folder holding switchboard/)")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per mode")
    parser.add_argument("--api-key", action="store_true",
                        help="authenticate with an issued API key instead of the master key")
    parser.add_argument("--key-cost", action="store_true",
                        help="measure the master key and an API key in the same run and compare them; "
                        "exit 1 if the API key costs more than --max-key-cost percent")
    parser.add_argument("--max-key-cost", type=float, default=5.0, help="percent (default 5)")
    parser.add_argument("--profile", choices=("bare", "full", "group", "metrics", "cluster"), default="bare",
                        help="full: measure the master key (bare path) and a virtual key with RPM/TPM "
                        "limits and a budget (full path) in the same run, and compare them; group: "
                        "one deployment against a group of two, in the same run; metrics: the bare "
                        "path with Prometheus metrics off against on, in the same run; cluster: the "
                        "full path on the embedded default against cluster mode (PostgreSQL and "
                        "Redis), in the same run")
    parser.add_argument("--metrics", choices=("on", "off"), default="on",
                        help="Prometheus metrics (metrics.enabled) of the measured gateway (default on)")
    parser.add_argument("--defer-flush", action="store_true",
                        help="leave the usage ledger's database writes out of the measurement")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="copy callgrind's output of each measured gateway to DIR "
                        "(read it with callgrind_annotate)")
    parser.add_argument("--baseline", type=Path, metavar="FILE",
                        help="compare the counts with FILE's; exit 1 if one is more than --tolerance higher")
    parser.add_argument("--save-baseline", type=Path, metavar="FILE", help="write the counts to FILE")
    parser.add_argument("--tolerance", type=float, default=3.0, help="percent (default 3)")
    args = parser.parse_args(argv)
    src = args.src.resolve()
    cache = _accepts(src, "DatabaseConfig", "cache_seconds")
    poller = _accepts(src, "FilesConfig", "poll_seconds")
    chains = _accepts(src, "BudgetsConfig", "expired_keys_seconds", "spend")
    if not cache:
        print(f"note: {src} has no database.cache_seconds: its caches reload every 10 s inside the "
              "measured windows, and its counts vary with the machine's load", flush=True)
    over = False
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sb-instr-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        nginx, base = upstream.nginx(root / "nginx", cpu=None)
        cluster = _datastores(stack) if args.profile == "cluster" else None

        def one(mode: str, *, clustered: bool = False, **kind: bool) -> float:
            kind.setdefault("metrics", args.metrics == "on")
            count, periodic = measure(src, mode, args.requests, root, base, defer_flush=args.defer_flush,
                                      keep=args.keep, cluster=cluster if clustered else None, cache=cache,
                                      poller=poller, chains=chains, **kind)
            label = _label(mode, clustered=clustered, **kind)
            counts[label] = count
            print(f"  {label}: in the window {', '.join(f'{n} {what}' for what, n in periodic.items())}",
                  flush=True)
            return count

        with nginx:
            for mode in harness.MODES:
                if args.profile == "cluster":
                    embedded = one(mode, full=True)
                    clustered = one(mode, full=True, clustered=True)
                    print(f"{mode:<11} full path embedded {embedded:>10,.0f}  cluster {clustered:>10,.0f} "
                          f" ({(clustered / embedded - 1) * 100:+.1f} %, {src})", flush=True)
                    continue
                if args.profile == "metrics":
                    off = one(mode, metrics=False)
                    on = one(mode, metrics=True)
                    print(f"{mode:<11} metrics off {off:>10,.0f}  metrics on {on:>10,.0f} "
                          f" ({(on / off - 1) * 100:+.1f} %, {src})", flush=True)
                    continue
                if args.profile == "group":
                    single = one(mode)
                    pair = one(mode, group=True)
                    print(f"{mode:<11} one deployment {single:>10,.0f}  group of two {pair:>10,.0f} "
                          f" ({(pair / single - 1) * 100:+.1f} %, {src})", flush=True)
                    continue
                if args.profile == "full":
                    bare = one(mode)
                    full = one(mode, full=True)
                    print(f"{mode:<11} bare (master key) {bare:>10,.0f}  full path {full:>10,.0f} "
                          f" ({(full / bare - 1) * 100:+.1f} %, {src})", flush=True)
                    continue
                if args.key_cost:
                    master = one(mode)
                    key = one(mode, api_key=True)
                    extra = (key / master - 1) * 100
                    over = over or extra > args.max_key_cost
                    print(f"{mode:<11} master key {master:>10,.0f}  API key {key:>10,.0f}  "
                          f"({extra:+.1f} %, {src})", flush=True)
                    continue
                per_request = one(mode, api_key=args.api_key)
                who = "API key" if args.api_key else "master key"
                print(f"{mode:<11} {per_request:>12,.0f} instructions/request  ({who}, {src})", flush=True)
    settings = {"defer_flush": args.defer_flush, "requests": args.requests,
                "cache_seconds": CACHE_SECONDS if cache else None, "environment": environment()}
    if args.baseline is not None:
        over = compare(counts, settings, json.loads(args.baseline.read_text()), args.tolerance) or over
    if args.save_baseline is not None:
        rounded = {label: round(count) for label, count in counts.items()}
        args.save_baseline.write_text(json.dumps({**settings, "counts": rounded}, indent=2) + "\n")
        print(f"baseline written to {args.save_baseline}")
    return 1 if over else 0


def _datastores(stack: contextlib.ExitStack) -> tuple[str, str]:
    """(database URL, Redis URL) of fresh PostgreSQL and Redis servers, pinned to the load CPU
    as bench/run.py's cluster target has them, stopped when ``stack`` closes. Each measured
    gateway migrates the database on start (a no-op after the first) and issues its own key."""
    import datastores

    database, redis = stack.enter_context(datastores.cluster(harness.LOAD_CPU))
    # A fresh Redis looks to the budget counters like one that lost its data: their first rebuild
    # would wait a ledger flush interval (60 s with --defer-flush) for other instances' records.
    # The marker says the counters have been in Redis all along, as in a long-running deployment.
    datastores.redis_set(redis, LOST_MARKER, "0")
    return database, redis


def _label(mode: str, *, api_key: bool = False, full: bool = False, group: bool = False,
           metrics: bool = True, clustered: bool = False) -> str:
    who = "full path" if full else "API key" if api_key else "master key"
    where = ", cluster" if clustered else ""
    return f"{who}{', group' if group else ''}{'' if metrics else ', metrics off'}{where} {mode}"


def environment() -> dict[str, str]:
    """What the counts depend on besides the tree: the interpreter and the compiled libraries on
    the request path. Counts from another environment are not comparable."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("uvicorn", "uvloop", "httptools", "orjson", "multidict", "aiosqlite", "sqlalchemy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def compare(counts: dict[str, float], settings: dict[str, Any], baseline: dict[str, Any],
            tolerance: float) -> bool:
    """Print each count against the baseline's; True if one is over it by more than ``tolerance``
    percent. Counts taken with other settings are refused; another environment is warned of."""
    if baseline.get("defer_flush") != settings["defer_flush"]:
        raise SystemExit("the baseline was counted with --defer-flush "
                         f"{'on' if baseline.get('defer_flush') else 'off'}: measure the same way")
    if "cache_seconds" not in baseline:
        # Written before the key: its counts may hold reloads, which only make them higher.
        print("note: the baseline was counted with the caches' reloads (every 10 s) inside the "
              "windows: its counts may hold some")
    elif baseline["cache_seconds"] != settings["cache_seconds"]:
        # One side counted with the caches reloading inside the window: not the same work.
        raise SystemExit(f"the baseline was counted with database.cache_seconds {baseline['cache_seconds']}"
                         f", this run with {settings['cache_seconds']}: not comparable")
    if baseline.get("environment") != settings["environment"]:
        print(f"note: the baseline's environment differs ({baseline.get('environment')} against "
              f"{settings['environment']}); its counts may not be comparable")
    over = False
    stored: dict[str, float] = baseline.get("counts", {})
    for label, count in counts.items():
        if label not in stored:
            print(f"  {label}: {count:,.0f} (not in the baseline)")
            continue
        change = (count / stored[label] - 1) * 100
        verdict = "MORE" if change > tolerance else "ok"
        over = over or change > tolerance
        print(f"  {label}: {count:,.0f} against {stored[label]:,.0f} ({change:+.1f} %) {verdict}")
    return over


if __name__ == "__main__":
    sys.exit(main())
