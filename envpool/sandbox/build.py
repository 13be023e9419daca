"""Build the sites' template databases: schema + deterministic data, once per server start.

``build_templates(cfg)`` returns one in-memory SQLite connection per database (``shop`` for the shop
and its admin, ``forum``); every episode state is a copy of these (see ``states.py``). The same
config (seed, sizes, today, seed data) gives byte-identical databases: :func:`digest` proves it.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

from envpool.sandbox.gen_forum import generate_forum
from envpool.sandbox.gen_shop import generate_shop
from envpool.sandbox.seed_data import SeedData, load_seed_data
from webrl.config import SandboxConfig

SCHEMA_DIR = Path(__file__).resolve().parent
DATABASES = ("shop", "forum")  # the admin site works on the shop's database


def new_database(name: str) -> sqlite3.Connection:
    """An empty in-memory database with the site's schema (``<name>.sql``)."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.executescript((SCHEMA_DIR / f"{name}.sql").read_text())
    return conn


def build_templates(cfg: SandboxConfig, data: SeedData | None = None) -> dict[str, sqlite3.Connection]:
    """The template databases for ``cfg``: each generator gets its own seeded ``random.Random``."""
    data = data or load_seed_data(cfg.data_dir)
    out = {}
    for name, generate in (("shop", generate_shop), ("forum", generate_forum)):
        conn = new_database(name)
        with conn:
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [("today", cfg.today.isoformat()), ("seed", str(cfg.seed))])
            generate(conn, data, cfg, random.Random(f"{cfg.seed}/{name}"))
        out[name] = conn
    return out


def digest(conn: sqlite3.Connection) -> str:
    """SHA-256 of the database's full SQL dump: equal digests, equal databases."""
    h = hashlib.sha256()
    for line in conn.iterdump():
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()
