"""Memory under sustained load: the gateway's resident memory, sampled while a steady mixed load
runs for a long time, with the misbehaviour a public edge sees.

    python bench/soak.py [--minutes 30] [--rate 150] [--out DIR] [--docs]

The gateway runs the full request path (a virtual key with an allowed-model list, RPM/TPM limits
and a budget; the usage ledger, metrics and request-log metadata on; routing over a group of two
deployments) against the built-in mock upstream. 2 % of the requests name a model the key may
not use (refused). One deployment of the group is unreliable
(upstream 500s, resets and timeouts, so retries, fallbacks and cooldowns run); a share of the
streaming clients disconnect after the first chunk. RSS is read from /proc every 10 s. The
growth is measured from the end of the warm-up (the median of the samples in the minute after it)
to the end (the median of the last minute's samples); the verdict is growth under 5 %.

Writes DIR/soak.csv, DIR/soak.json, DIR/soak.png (when matplotlib is installed) and a text chart;
``--docs`` copies the PNG to docs/img/soak.png and rewrites the soak section of
docs/benchmarks.md. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from procs import Service, free_port, http

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-soak-master-key"
UPSTREAM_KEY = "sk-soak-upstream"
SAMPLE_SECONDS = 10.0
MAX_GROWTH = 0.05
GATEWAY_CPU, LOAD_CPU = 0, 1


def config(mock: str) -> str:
    faults = "rate=0.05;kinds=500,reset,timeout,stall"
    return f"""\
providers:
  - name: steady
    type: openai
    api_base: {mock}/v1
    api_key: {UPSTREAM_KEY}
  - name: flaky
    type: openai
    api_base: {mock}/v1
    api_key: {UPSTREAM_KEY}
    headers:
      x-mock-faults: "{faults}"
    timeouts: {{connect: 1, first_byte: 1, total: 3}}
models:
  - name: soak-model
    provider: steady
    model: gpt-4o-mini
    deployment: steady
  - name: soak-model
    provider: flaky
    model: gpt-4o-mini
    deployment: flaky
auth:
  master_key: {MASTER_KEY}
router:
  cooldown:
    seconds: 2
server:
  log_level: warning
"""


KEY = {"name": "soak", "models": ["soak-model"], "rpm_limit": 100_000_000, "tpm_limit": 1_000_000_000_000,
       "max_budget_usd": 1_000_000_000}


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (a multi-worker gateway), in KiB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.append(int(child))
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    disconnected: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def one(session: aiohttp.ClientSession, url: str, key: str, rng: random.Random, tally: Tally,
              disconnect_share: float) -> None:
    stream = rng.random() < 0.5
    words = " ".join(rng.choice(("alpha", "beta", "gamma", "delta")) for _ in range(rng.randint(1, 60)))
    # A few callers name a model they may not use: refused at the edge, every time.
    model = "soak-model" if rng.random() >= 0.02 else "not-a-model"
    body = {"model": model, "messages": [{"role": "user", "content": words}], "stream": stream}
    tally.sent += 1
    try:
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
            if resp.status != 200:
                await resp.read()
                tally.error(str(resp.status))
                return
            if stream and rng.random() < disconnect_share:
                await resp.content.readline()
                resp.close()  # drop the connection mid-stream
                tally.disconnected += 1
                return
            await resp.read()
            tally.ok += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.error(type(exc).__name__)


async def load(url: str, key: str, seconds: float, rate: float, pid: int, samples: list[tuple[float, int]],
               tally: Tally, disconnect_share: float) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.monotonic()
        next_sample = start
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (now := time.monotonic()) - start < seconds:
            if now >= next_sample:
                samples.append((now - start, rss_kib(pid)))
                minutes = (now - start) / 60
                print(f"  {minutes:5.1f} min  rss {samples[-1][1] / 1024:7.1f} MiB  sent {tally.sent}  "
                      f"ok {tally.ok}  cut {tally.disconnected}  errors {sum(tally.errors.values())}",
                      flush=True)
                next_sample += SAMPLE_SECONDS
            due = start + n / rate
            if due > now:
                await asyncio.sleep(min(due - now, max(0.0, next_sample - now)))
                continue
            n += 1
            task = asyncio.create_task(one(session, url, key, rng, tally, disconnect_share))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=35)
        samples.append((time.monotonic() - start, rss_kib(pid)))


def growth(samples: list[tuple[float, int]], warmup: float) -> tuple[float, float, float]:
    """(RSS after warm-up, RSS at the end, growth): medians over a minute at each end."""
    after = [r for t, r in samples if warmup <= t < warmup + 60] or [samples[0][1]]
    end_t = samples[-1][0]
    last = [r for t, r in samples if t >= end_t - 60] or [samples[-1][1]]
    first_mid, last_mid = statistics.median(after), statistics.median(last)
    return first_mid, last_mid, last_mid / first_mid - 1


def text_chart(samples: list[tuple[float, int]], width: int = 60, height: int = 12) -> str:
    rss = [r / 1024 for _, r in samples]
    low, high = min(rss), max(rss)
    span = (high - low) or 1.0
    cols = [rss[int(i * (len(rss) - 1) / max(1, width - 1))] for i in range(width)]
    rows = []
    for level in range(height, 0, -1):
        cut = low + span * (level - 0.5) / height
        label = f"{low + span * level / height:7.1f} |" if level in (height, 1) else "        |"
        rows.append(label + "".join("*" if v >= cut else " " for v in cols))
    minutes = samples[-1][0] / 60
    rows.append("   MiB  +" + "-" * width)
    rows.append(f"         0 min{' ' * (width - 12)}{minutes:.0f} min")
    return "\n".join(rows)


def plot(samples: list[tuple[float, int]], warmup: float, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.plot([t / 60 for t, _ in samples], [r / 1024 for _, r in samples], linewidth=1.2)
    ax.axvline(warmup / 60, color="grey", linestyle="--", linewidth=0.8, label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


DOC_BEGIN, DOC_END = "<!-- soak:begin -->", "<!-- soak:end -->"


def write_docs(summary: dict[str, object], chart: str, png: Path | None) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text()
    if png is not None:
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        shutil.copy(png, ROOT / "docs" / "img" / "soak.png")
    tally = summary["tally"]
    assert isinstance(tally, dict)
    block = "\n".join([
        DOC_BEGIN,
        f"`python bench/soak.py --minutes {summary['minutes']:g} --rate {summary['rate']:g} --docs`, "
        f"{summary['date']}: {tally['sent']:,} requests ({tally['ok']:,} answered in full, "
        f"{tally['disconnected']:,} streams cut by the client, "
        f"{sum(tally['errors'].values()):,} errors: {tally['errors'] or 'none'}).",
        "",
        f"RSS after the {summary['warmup_minutes']:g}-minute warm-up "
        f"{summary['rss_after_warmup_mib']:.1f} MiB, "
        f"at the end {summary['rss_end_mib']:.1f} MiB: growth {summary['growth_percent']:+.2f} % "
        f"(target under {MAX_GROWTH:.0%}): **{summary['verdict']}**.",
        "",
        *(["![RSS over the soak](img/soak.png)", ""] if png is not None else []),
        "```",
        chart,
        "```",
        DOC_END,
    ])
    if DOC_BEGIN in text:
        text = re.sub(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Memory under a soak\n\n" + block + "\n"
    docs.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes of warm-up (default 5)")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second (default 150)")
    parser.add_argument("--disconnect", type=float, default=0.1, help="share of streams cut mid-way")
    parser.add_argument("--out", type=Path, default=None, help="where results go (default: a temp dir)")
    parser.add_argument("--docs", action="store_true", help="rewrite the soak section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="switchboard-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="switchboard-soak-run-") as tmp:
        root = Path(tmp)
        mport, gport = free_port(), free_port()
        mock = [sys.executable, "-m", "switchboard", "mock", "--port", str(mport), "--api-key", UPSTREAM_KEY]
        cfg = root / "soak.yaml"
        cfg.write_text(config(f"http://127.0.0.1:{mport}"))
        gateway = [sys.executable, "-m", "switchboard", "serve", "--config", str(cfg), "--port", str(gport),
                   "--workers", "1"]
        env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(root / "data")}
        url = f"http://127.0.0.1:{gport}"
        with Service("mock", mock, root / "mock.log", cpu=LOAD_CPU) as upstream, \
                Service("gateway", gateway, root / "gateway.log", cpu=GATEWAY_CPU, env=env) as gw:
            upstream.wait_ready(f"http://127.0.0.1:{mport}/_mock/stats", timeout=30)
            gw.wait_ready(url + "/health/ready", timeout=300)
            admin = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
            status, _, raw = http("POST", url + "/admin/v1/keys", json.dumps(KEY).encode(), admin)
            if status != 201:
                raise SystemExit(f"could not issue the key: HTTP {status} {raw[:300]!r}")
            key = json.loads(raw)["key"]
            assert gw.proc is not None
            samples: list[tuple[float, int]] = []
            tally = Tally()
            print(f"soak: {args.minutes:g} min at {args.rate:g} req/s, gateway pid {gw.proc.pid}", flush=True)
            asyncio.run(load(url + "/v1/chat/completions", key, args.minutes * 60, args.rate, gw.proc.pid,
                             samples, tally, args.disconnect))
    warmup = args.warmup * 60
    first, last, grew = growth(samples, warmup)
    verdict = "PASS" if grew < MAX_GROWTH else "FAIL"
    summary = {
        "date": time.strftime("%Y-%m-%d"), "minutes": args.minutes, "rate": args.rate,
        "warmup_minutes": args.warmup, "rss_after_warmup_mib": first / 1024, "rss_end_mib": last / 1024,
        "growth_percent": grew * 100, "verdict": verdict, "tally": asdict(tally),
    }
    with (out / "soak.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", "rss_kib"])
        writer.writerows(samples)
    (out / "soak.json").write_text(json.dumps({**summary, "samples": samples}, indent=1) + "\n")
    chart = text_chart(samples)
    png = out / "soak.png"
    title = f"Gateway RSS, {args.rate:g} req/s mixed load, full request path"
    drawn = plot(samples, warmup, png, title)
    print(chart)
    print(f"RSS {first / 1024:.1f} MiB after warm-up, {last / 1024:.1f} MiB at the end: "
          f"{grew:+.2%} ({verdict})")
    print(f"results in {out}")
    if args.docs:
        write_docs(summary, chart, png if drawn else None)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
