"""Per-episode site state: each episode works on its own in-memory copy of the template databases.

A copy is made with SQLite's online backup (``Connection.backup``) into a fresh ``:memory:``
connection, a few milliseconds for the whole shop; discarding it frees the memory. Requests without
an episode (a person browsing via ``webrl sites serve``) share one "browse" state.

All access happens on the server's one event-loop thread, so connections need no locks.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from envpool.sandbox.build import DATABASES

BROWSE = "browse"  # the state of requests that carry no episode cookie
SITE_DATABASES = {"shop": "shop", "admin": "shop", "forum": "forum"}  # which database each site works on
EPISODE_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")

# what a read-only query may do: read tables, call functions, recurse in CTEs
_READ_ONLY_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                      getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


class UnknownEpisode(KeyError):
    def __str__(self) -> str:
        return self.args[0]


class StateError(ValueError):
    """A request the store refuses (bad id, too many episodes, a write in a query); says why."""


def hot_rank(score: int, created_at: str) -> float:
    """The forum's "hot" order: log-scaled score plus recency (12.5 hours count as a tenfold score)."""
    seconds = datetime.fromisoformat(created_at).replace(tzinfo=timezone.utc).timestamp()  # same order in any TZ
    sign = (score > 0) - (score < 0)
    return round(sign * math.log10(max(abs(score), 1)) + seconds / 45000, 7)


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.create_function("hot_rank", 2, hot_rank, deterministic=True)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@dataclass
class SiteState:
    """One episode's databases (``shop``, ``forum``) and when it was last used."""

    dbs: dict[str, sqlite3.Connection]
    flash: dict[str, str] = field(default_factory=dict)  # a message per site for the next page (after a form)
    created: float = field(default_factory=time.time)
    used: float = field(default_factory=time.time)

    def db(self, site: str) -> sqlite3.Connection:
        return self.dbs[SITE_DATABASES[site]]

    def close(self) -> None:
        for conn in self.dbs.values():
            conn.close()


class StateStore:
    """The templates, the browse state, and the episode states by id."""

    def __init__(self, templates: dict[str, sqlite3.Connection], max_episodes: int, ttl_s: float):
        self.templates, self.max_episodes, self.ttl_s = templates, max_episodes, ttl_s
        self.episodes: dict[str, SiteState] = {}
        self.browse = self._copy()

    def _copy(self) -> SiteState:
        dbs = {}
        for name in DATABASES:
            conn = _connect()
            self.templates[name].backup(conn)
            dbs[name] = conn
        return SiteState(dbs)

    def create(self, episode_id: str) -> float:
        """Make the episode's state; returns the milliseconds it took. An existing one is replaced."""
        if not EPISODE_ID.fullmatch(episode_id) or episode_id == BROWSE:
            raise StateError(f"bad episode id {episode_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . - (not 'browse')")
        self.expire()
        if episode_id not in self.episodes and len(self.episodes) >= self.max_episodes:
            raise StateError(f"{len(self.episodes)} episode states are alive, the limit (env.sandbox.max_episodes); "
                             "discard finished episodes or raise the limit")
        t0 = time.perf_counter()
        state = self._copy()
        old = self.episodes.pop(episode_id, None)
        if old is not None:
            old.close()
        self.episodes[episode_id] = state
        return (time.perf_counter() - t0) * 1000

    def discard(self, episode_id: str) -> bool:
        """Drop the episode's state; False if there was none."""
        state = self.episodes.pop(episode_id, None)
        if state is None:
            return False
        state.close()
        return True

    def get(self, episode_id: str | None) -> SiteState:
        """The state of ``episode_id`` (None or 'browse': the shared browse state)."""
        if episode_id is None or episode_id == BROWSE:
            return self.browse
        state = self.episodes.get(episode_id)
        if state is None:
            raise UnknownEpisode(f"no state for episode {episode_id!r}: it was discarded, expired after "
                                 f"{self.ttl_s:.0f} s unused, or never created")
        state.used = time.time()
        return state

    def expire(self) -> list[str]:
        """Drop states unused for ``ttl_s`` (their pool died without discarding them)."""
        cutoff = time.time() - self.ttl_s
        old = [eid for eid, s in self.episodes.items() if s.used < cutoff]
        for eid in old:
            self.discard(eid)
        return old

    def query(self, episode_id: str | None, site: str, sql: str, params: list | dict | None = None,
              max_rows: int = 1000) -> dict:
        """Run one read-only SQL statement on the site's database of the episode.

        Returns ``{"columns": [...], "rows": [[...]], "truncated": bool}``; refuses writes, PRAGMAs,
        ATTACH and anything else that is not a plain read, with :class:`StateError`."""
        if site not in SITE_DATABASES:
            raise StateError(f"unknown site {site!r}; sites: {', '.join(SITE_DATABASES)}")
        conn = self.get(episode_id).db(site)
        refused: list[int] = []

        def authorize(action, *_):
            if action in _READ_ONLY_ACTIONS:
                return sqlite3.SQLITE_OK
            refused.append(action)
            return sqlite3.SQLITE_DENY

        conn.set_authorizer(authorize)
        try:
            cur = conn.execute(sql, params or ())
            rows = cur.fetchmany(max_rows + 1)
        except sqlite3.Error as e:
            if refused:
                raise StateError("only read-only queries are allowed (SELECT, WITH ... SELECT); "
                                 f"this statement would write or change the database ({e})") from None
            raise StateError(f"the query failed: {e}") from None
        finally:
            conn.set_authorizer(None)
        columns = [d[0] for d in cur.description or []]
        return {"columns": columns, "rows": [list(r) for r in rows[:max_rows]], "truncated": len(rows) > max_rows}

    def close(self) -> None:
        for eid in list(self.episodes):
            self.discard(eid)
        self.browse.close()
