"""Benchmark: per-episode state reset of the sandbox sites, against a bare SQLite backup.

Measured in one run, on the same generated data:

- ``create``: a fresh state through the control API (HTTP round trip, backup of the shop and forum
  databases into new in-memory connections), as ``SandboxSuite.prepare`` does it;
- ``create_load``: create + the episode's first page (the shop's home page, with the episode cookie);
- ``raw_backup``: the baseline, ``sqlite3.Connection.backup`` of the same template databases into
  ``:memory:`` in this process, nothing else;
- ``pool_reset``: the full ``BrowserPool.reset`` of a sandbox task (fresh Chromium context, state,
  cookie, start page, first observation).

``reset_latency_ratio`` is raw_backup / create (medians; 1 = no overhead over the bare backup).

    python bench/sandbox.py --json        # one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envpool.pool import BrowserPool  # noqa: E402
from envpool.sandbox.build import build_templates  # noqa: E402
from envpool.sandbox.process import COOKIE, SandboxServer  # noqa: E402
from webrl.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tests" / "data" / "sandbox"  # the sandbox's example tasks (a fixed set, whatever the bundled ones are)
TASK = "sandbox/shop-product-price-0"


def summary(name: str, samples_ms: list[float]) -> dict[str, float]:
    p95 = statistics.quantiles(samples_ms, n=20)[18] if len(samples_ms) >= 2 else samples_ms[0]
    return {f"{name}_ms_median": round(statistics.median(samples_ms), 3), f"{name}_ms_p95": round(p95, 3)}


def raw_backups(templates: dict[str, sqlite3.Connection], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        copies = []
        for conn in templates.values():
            dst = sqlite3.connect(":memory:")
            conn.backup(dst)
            copies.append(dst)
        out.append((time.perf_counter() - t0) * 1000)
        for dst in copies:
            dst.close()
    return out


def server_resets(server: SandboxServer, n: int, load: bool) -> tuple[list[float], list[float]]:
    """Wall ms of n creates (plus the first page when ``load``), and the server's own ms of each create."""
    wall, inside = [], []
    for i in range(n):
        eid = f"bench-{'load' if load else 'create'}-{i}"
        t0 = time.perf_counter()
        inside.append(server.create(eid))
        if load:
            req = urllib.request.Request(server.urls["shop"] + "/", headers={"Cookie": f"{COOKIE}={eid}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        wall.append((time.perf_counter() - t0) * 1000)
        server.discard(eid)
    return wall, inside


async def pool_resets(cfg, n: int) -> list[float]:
    async with BrowserPool(cfg.env) as pool:
        await pool.close((await pool.reset(TASK)).episode_id)  # warm-up: server start, first page
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            rec = await pool.reset(TASK)
            out.append((time.perf_counter() - t0) * 1000)
            assert rec.status.value == "running", rec.reason
            await pool.close(rec.episode_id)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    ap.add_argument("--resets", type=int, default=50, help="state resets measured per kind")
    ap.add_argument("--pool-resets", type=int, default=10, help="BrowserPool.reset calls measured")
    args = ap.parse_args()
    cfg = load_config("local", [f"env.sandbox.tasks_dir={TASKS}"])
    templates = build_templates(cfg.env.sandbox)
    db_kib = sum(c.execute("PRAGMA page_count").fetchone()[0] * c.execute("PRAGMA page_size").fetchone()[0]
                 for c in templates.values()) / 1024
    raw_backups(templates, 5)  # warm-up
    out: dict[str, float] = {"resets": args.resets, "db_kib": round(db_kib)}
    with SandboxServer(cfg.env.sandbox, host=cfg.env.bind_host) as server:
        out["build_ms"] = server.build_ms
        server_resets(server, 5, load=True)  # warm-up
        create, inside = server_resets(server, args.resets, load=False)
        create_load, _ = server_resets(server, args.resets, load=True)
    raw = raw_backups(templates, args.resets)
    out |= summary("create", create) | summary("create_server", inside) | summary("create_load", create_load)
    out |= summary("raw_backup", raw)
    out["reset_latency_ratio"] = round(statistics.median(raw) / statistics.median(create), 3)
    out |= summary("pool_reset", asyncio.run(pool_resets(cfg, args.pool_resets)))
    if not args.json:
        print(f"state reset: create {out['create_ms_median']:.1f} ms (server {out['create_server_ms_median']:.1f} ms), "
              f"create + first page {out['create_load_ms_median']:.1f} ms, bare backup {out['raw_backup_ms_median']:.1f} ms; "
              f"BrowserPool.reset {out['pool_reset_ms_median']:.0f} ms", file=sys.stderr)
    print(json.dumps({"benchmark": "sandbox", **out}))


if __name__ == "__main__":
    main()
