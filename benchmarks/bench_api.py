"""Load-test the weights API on loopback; prints one JSON line.

    python benchmarks/bench_api.py [--duration 5] [--requests 200] [--trivial /docs] [--database-url URL]
                                   [--compare-url URL]

What it does: fills a fresh warehouse (SQLite file by default) with a realistic subnet (256 uids
scored on 8 envs, and 200 cycles of weights), starts `kinitro api` as a subprocess (uvicorn, one
worker, exactly what an operator runs), and drives it with wrk (one thread, loopback) at 200 and
at 10 connections against `/v1/weights/latest` (full body, no If-None-Match: what Kinitro
validators send), `/v1/scores/latest` (~170 KB: what dashboards read), `/health` (what load
balancers poll) and a trivial endpoint of the same app, in the same run. It reports requests/s,
p50 and p99 for each, the latest/trivial throughput ratio, and the API process's RSS (current and
peak). Then it reads the other dashboard endpoints (`/v1/miners`, `/v1/environments`,
`/v1/scores/latest`, `/v1/scores/{cycle_id}`, `/metrics`, `/v1/status`) over one keep-alive
connection, `--requests` times each in turn (sequential: one request in flight, so the latency is
the server's cost per request, not queueing), and reports p50/p99/mean per endpoint.

`--compare-url` names another server already serving the same data (Kinitro's own API, say) whose
`/v1/weights/latest`, `/v1/scores/latest` and `/health` are measured in the same rounds, so the
ratios between the two come from one run; nothing of that server is started or built here.

The trivial endpoint is `/docs` by default: the cheapest route the app has (a ~1 KB HTML page
built in memory, no database).

Targets (DESIGN §11 and issue 17, 2 cores): at 200 connections latest ≥ 0.8 × trivial throughput
and its p99 < 100 ms; p99 < 20 ms at 10 connections; `/v1/scores/latest` ≥ 20 × the compared
server's throughput (≥ 240 req/s, 20 × the 12 req/s Kinitro's served here, without one) and
`/health` at least the compared server's; the API process ≤ 200 MiB RSS; each dashboard endpoint
< 20 ms p50 sequentially.

Needs wrk (Debian: `apt-get install -y wrk`); without it the script says so and exits 2. wrk is
C and needs a fraction of a core at these rates, so the API process (one core) is what saturates.
On a shared host the numbers move with other load: `loadavg_1m` in the output says how busy it was.
`--database-url` may point at an empty database (e.g. PostgreSQL) instead; it is migrated and filled.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from kinitro_dagster.scoring import score_cycle, weights_to_u16
from kinitro_dagster.sim.registry import ENV_IDS
from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import (
    CommitmentRecord,
    CommitmentStatus,
    CycleRecord,
    CycleStatus,
    MinerScoreRecord,
    ParetoScoreRecord,
    WeightsRecord,
)

LATEST = "/v1/weights/latest"
N_UIDS = 256
N_EPISODES = 50
HISTORY_CYCLES = 199  # older cycles with published weights: the latest must not cost more as they pile up
INTERVAL_BLOCKS = 300
CONNECTIONS = (200, 10)
SCORES = "/v1/scores/latest"
HEALTH = "/health"
KINITRO_SCORES_RPS = 12.0  # Kinitro's /v1/scores/latest at 10 connections on this data (issue 17)
SLOW_ROUND_S = 5  # wrk round for the compared server's scores, which take ~1 s a request there
# Endpoints dashboards and operators read; `{cycle}` is the latest cycle's key.
SEQUENTIAL = (
    "/v1/miners",
    "/v1/environments",
    "/v1/scores/latest",
    "/v1/scores/{cycle}",
    "/metrics",
    "/v1/status",
)

# wrk's Lua hook: print the summary as one JSON object at the end of the run (latencies in µs).
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# --------------------------------------------------------------------------- the warehouse


def populate(url: str, seed: int = 7) -> int:
    """Fill an empty warehouse with a scored 256-miner cycle and its history; returns its block."""
    store = Warehouse(url)
    try:
        store.migrate()
        if store.latest_cycle() is not None:
            raise SystemExit(f"bench_api: {store!r} already holds cycles; give it an empty database")
        rng = np.random.default_rng(seed)
        env_ids = list(ENV_IDS)
        start = datetime.now(UTC) - timedelta(hours=HISTORY_CYCLES + 1)
        first_block = 4_000_000
        for i in range(HISTORY_CYCLES + 1):
            block = first_block + i * INTERVAL_BLOCKS
            _write_cycle(store, rng, block, start + timedelta(hours=i), env_ids, full=i == HISTORY_CYCLES)
        return first_block + HISTORY_CYCLES * INTERVAL_BLOCKS
    finally:
        store.dispose()


def _write_cycle(
    store: Warehouse, rng: np.random.Generator, block: int, opened: datetime, env_ids: list[str], full: bool
) -> None:
    key = f"{block:010d}"
    uids = np.arange(N_UIDS)
    success = rng.binomial(N_EPISODES, rng.beta(2, 5, size=(N_UIDS, len(env_ids)))) / N_EPISODES
    priority = rng.integers(block - 100_000, block, size=N_UIDS)
    scores = score_cycle(success, uids, priority, np.ones(N_UIDS, dtype=bool), N_EPISODES)
    done = opened + timedelta(minutes=float(rng.uniform(20, 55)))
    block_hash = f"0x{random.Random(block).getrandbits(256):064x}"
    store.upsert_cycle(CycleRecord(key, block, block_hash, opened, CycleStatus.COMPLETED, done, N_UIDS, len(env_ids)))
    if full:  # the latest cycle carries everything the other endpoints read
        store.replace_commitments(key, [_commitment(int(u), int(priority[u])) for u in uids])
        miner_scores = [
            MinerScoreRecord(int(u), env, float(success[u, e]), N_EPISODES, 0, float(rng.uniform(0, 500)))
            for u in uids
            for e, env in enumerate(env_ids)
        ]
        pareto = [
            ParetoScoreRecord(
                uid=int(u),
                on_frontier=bool(scores.frontier[u]),
                points=float(scores.points[u]),
                weight=float(scores.weights[u]),
                thresholds={env: float(scores.thresholds[u, e]) for e, env in enumerate(env_ids)},
            )
            for u in uids
        ]
        store.replace_scores(key, miner_scores, pareto)
    u16_uids, u16_values = weights_to_u16(uids, scores.weights)
    store.write_weights(
        WeightsRecord(
            cycle_key=key,
            block=block,
            weights={int(u): float(w) for u, w in zip(uids, scores.weights, strict=True)},
            u16_uids=u16_uids,
            u16_values=u16_values,
            created_at=done,
            n_miners=N_UIDS,
            n_envs=len(env_ids),
            duration_seconds=(done - opened).total_seconds(),
        )
    )


def _commitment(uid: int, first_seen: int) -> CommitmentRecord:
    revision = f"{random.Random(uid).getrandbits(160):040x}"
    return CommitmentRecord(
        uid=uid,
        hotkey=f"5{uid:047d}",
        raw=f"miner{uid}/policy:{revision[:8]}:dep-{uid}",
        commit_block=first_seen,
        status=CommitmentStatus.OK,
        repo=f"miner{uid}/policy",
        revision=revision,
        first_seen_block=first_seen,
        content_hash=f"sha256:{random.Random(-uid).getrandbits(256):064x}",
    )


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def api_server(url: str, port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    """`kinitro api` on 127.0.0.1:port until /health answers; stopped with SIGTERM afterwards."""
    command = [sys.executable, "-c", "from kinitro_dagster.cli import main; main()", "api"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--database-url", url, "--log-level", "WARNING"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"bench_api: the API exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_api: the API did not answer /health within 60 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mib(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "current": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "peak": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
    }


# --------------------------------------------------------------------------- load


def measure(
    wrk: str, script: Path, urls: dict[str, str], connections: int, duration_s: int, slow: frozenset[str] = frozenset()
) -> dict[str, object]:
    """Each endpoint in `duration_s` wrk rounds, alternating A B B A ... so drift in the machine's
    load (other processes on a shared host) hits them alike. A round is 1 s, or `SLOW_ROUND_S` for
    the endpoints named in `slow` (a 1-s round would end before their requests do).

    requests/s pools every round; p50 and p99 are the median over rounds (robust to a round in
    which another process took the CPU), `p99_max_ms` the worst round's p99. Only the compared
    server's endpoints (`compared_*`) may fail requests; theirs are counted in `errors`.
    """
    names = list(urls)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for i in range(duration_s):
        for name in names if i % 2 == 0 else reversed(names):
            seconds = SLOW_ROUND_S if name in slow else 1
            rounds[name].append(run_wrk(wrk, script, urls[name], connections, seconds, name.startswith("compared_")))
    row: dict[str, object] = {}
    for name, results in rounds.items():
        row[name] = {
            "rps": round(sum(r["requests"] for r in results) / sum(r["seconds"] for r in results), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in results), 2),
            "p99_max_ms": max(r["p99_ms"] for r in results),
            "requests": sum(r["requests"] for r in results),
            **({"errors": sum(r["errors"] for r in results)} if name.startswith("compared_") else {}),
        }
    return row


def check_answers(url: str) -> None:
    response = httpx.get(url, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"bench_api: {url} answered {response.status_code}: {response.text[:300]}")


def run_wrk(
    wrk: str, script: Path, url: str, connections: int, duration_s: int, tolerate_errors: bool = False
) -> dict[str, float]:
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_api: {' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    failures = {kind: n for kind, n in report["errors"].items() if n}
    if failures and not tolerate_errors:  # a fast error is not throughput: refuse to report it
        raise SystemExit(f"bench_api: {url} at {connections} connections had failures {failures}:\n{out}")
    return {
        "requests": report["requests"],
        "seconds": report["duration_us"] / 1e6,
        "p50_ms": round(report["p50_us"] / 1000, 2),
        "p99_ms": round(report["p99_us"] / 1000, 2),
        "errors": sum(failures.values()),
    }


def measure_sequential(base: str, paths: list[str], n_requests: int) -> dict[str, dict[str, float]]:
    """Each path `n_requests` times over one keep-alive connection, one request in flight, the
    paths taken in turn (round-robin) so drift in the host's load hits them alike. Latency is
    measured at the client: request sent to body read."""
    samples: dict[str, list[float]] = {path: [] for path in paths}
    sizes: dict[str, int] = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in paths:  # warm-up: thread pool, connection pool, any cache
            for _ in range(3):
                response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"bench_api: {path} answered {response.status_code}: {response.text[:300]}")
        for _ in range(n_requests):
            for path in paths:
                started = time.perf_counter()
                response = client.get(path)
                samples[path].append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"bench_api: {path} answered {response.status_code}: {response.text[:300]}")
                sizes[path] = len(response.content)
    out: dict[str, dict[str, float]] = {}
    for path, seconds in samples.items():
        ms = np.asarray(seconds) * 1000
        out[path] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2),
            "body_bytes": sizes[path],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds per endpoint and connection count, in 1-s rounds (default 5)"
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="sequential requests per dashboard endpoint (default 200)"
    )
    parser.add_argument("--trivial", default="/docs", help="the comparison endpoint of the same app (default /docs)")
    parser.add_argument("--database-url", default=None, help="an empty database to fill (default a temp SQLite file)")
    parser.add_argument(
        "--compare-url", default=None, help="another API serving the same data, measured in the same rounds"
    )
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench_api: wrk not found on PATH; install it (Debian/Ubuntu: apt-get install -y wrk)", file=sys.stderr)
        raise SystemExit(2)
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()

    with tempfile.TemporaryDirectory(prefix="kinitro-bench-api-") as tmp:
        state = Path(tmp)
        url = args.database_url or f"sqlite:///{state / 'warehouse.db'}"
        latest_block = populate(url)
        script = state / "report.lua"
        script.write_text(WRK_REPORT)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with api_server(url, port, state / "api.log") as server:
            latest = httpx.get(base + LATEST, timeout=5)
            trivial = httpx.get(base + args.trivial, timeout=5)
            if latest.status_code != 200 or latest.json()["block"] != latest_block:
                raise SystemExit(f"bench_api: {LATEST} answered {latest.status_code}: {latest.text[:300]}")
            if trivial.status_code != 200:
                raise SystemExit(f"bench_api: {args.trivial} answered {trivial.status_code}: {trivial.text[:300]}")
            check_answers(base + SCORES)
            # Warm up the paths (caches, thread pool, connection pool) before measuring.
            for path in (LATEST, args.trivial, SCORES, HEALTH):
                run_wrk(wrk, script, base + path, 10, 1)
            load_before = os.getloadavg()[0]
            results: dict[str, dict[str, object]] = {}
            urls = {"latest": base + LATEST, "trivial": base + args.trivial, "scores": base + SCORES,
                    "health": base + HEALTH}  # fmt: skip
            if args.compare_url:
                compared = args.compare_url.rstrip("/")
                for name, path in (("latest", LATEST), ("scores", SCORES), ("health", HEALTH)):
                    check_answers(compared + path)
                    urls[f"compared_{name}"] = compared + path
            for connections in CONNECTIONS:
                # The compared scores only at 10 connections: at 200 a ~1-s request would queue past wrk's timeout.
                measured = {k: v for k, v in urls.items() if connections == 10 or k != "compared_scores"}
                row = measure(wrk, script, measured, connections, args.duration, frozenset({"compared_scores"}))
                row["ratio"] = round(row["latest"]["rps"] / row["trivial"]["rps"], 3)  # type: ignore[index]
                if args.compare_url:
                    row["vs_compared"] = {
                        name: round(row[name]["rps"] / max(row[f"compared_{name}"]["rps"], 0.1), 2)  # type: ignore[index]
                        for name in ("latest", "scores", "health")
                        if f"compared_{name}" in row
                    }
                results[f"c{connections}"] = row
            paths = [p.format(cycle=f"{latest_block:010d}") for p in SEQUENTIAL]
            sequential = measure_sequential(base, paths, args.requests)
            rss = rss_mib(server.pid)
            load_after = os.getloadavg()[0]

    c200, c10 = results["c200"], results["c10"]
    print(
        json.dumps(
            {
                "benchmark": "weights_api",
                "server": "kinitro api (uvicorn, 1 worker)",
                "database": url.split(":", 1)[0],
                "load_generator": f"{wrk_version}, 1 thread, loopback",
                "cores": os.cpu_count(),
                "loadavg_1m": [round(load_before, 2), round(load_after, 2)],  # other work on the host, before/after
                "duration_s": args.duration,
                "uids": N_UIDS,
                "latest_body_bytes": len(latest.content),
                "trivial_endpoint": args.trivial,
                **results,
                "sequential": {"connections": 1, "requests": args.requests, **sequential},
                "api_rss_mib": rss,
                "compared_url": args.compare_url,
                "targets": {
                    "c200_ratio_ge_0.8": c200["ratio"] >= 0.8,
                    "c200_latest_p99_lt_100ms": c200["latest"]["p99_ms"] < 100,
                    "c10_latest_p99_lt_20ms": c10["latest"]["p99_ms"] < 20,
                    "scores_ge_20x_compared": c10["scores"]["rps"]
                    >= 20 * (c10["compared_scores"]["rps"] if args.compare_url else KINITRO_SCORES_RPS),
                    "health_ge_compared": all(
                        row["health"]["rps"] >= row["compared_health"]["rps"] for row in (c200, c10)
                    )
                    if args.compare_url
                    else None,
                    "rss_le_200mib": rss["peak"] <= 200,
                    "sequential_p50_lt_20ms": all(r["p50_ms"] < 20 for r in sequential.values()),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
