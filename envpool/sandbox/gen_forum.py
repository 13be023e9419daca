"""Forum data: users, ~30 forums with subscriptions, posts with heavy-tailed scores, nested comments,
and the signed-in user's own votes.

Deterministic: every choice comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta

from envpool.sandbox.clock import day_start, random_moment, stamp
from envpool.sandbox.seed_data import SeedData
from envpool.sandbox.shop_rules import DEFAULT_PASSWORD
from webrl.config import SandboxConfig

MAX_DEPTH = 5  # replies nest at most this deep
TITLE_SUFFIXES = (" (update)", " (part 2)", " - follow-up", ", again")


def _usernames(data: SeedData, rng: random.Random, count: int) -> list[str]:
    parts = data.by_first("usernames.tsv")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        a, b = rng.choice(parts["first"]), rng.choice(parts["second"])
        style = rng.randrange(4)
        name = (f"{a}{b}{rng.randint(1, 999)}", f"{a.lower()}_{b.lower()}", f"{a}{b}",
                f"{b.lower()}{rng.randint(10, 99)}")[style]
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


def _users(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random, topics: list[str]) -> list[dict]:
    start = day_start(cfg.today) - timedelta(days=cfg.history_days + 300)
    end = day_start(cfg.today) - timedelta(days=60)
    users = []
    for uid, name in enumerate(_usernames(data, rng, cfg.forum_users), start=1):
        a, b = rng.sample(topics, 2)
        u = {"id": uid, "username": name, "created": random_moment(rng, start, end), "about": f"Into {a} and {b}."}
        conn.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                     (uid, name, DEFAULT_PASSWORD, u["about"], stamp(u["created"])))
        users.append(u)
    return users


def _forums(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random, users: list[dict]) -> list[dict]:
    forums = []
    for fid, (name, title, description, topics) in enumerate(data.values("forums.tsv"), start=1):
        creator = rng.choice(users)
        created = creator["created"] + timedelta(days=rng.randint(0, 30))
        conn.execute("INSERT INTO forums VALUES (?, ?, ?, ?, ?, ?)",
                     (fid, name, title, description, creator["id"], stamp(created)))
        forums.append({"id": fid, "name": name, "topics": topics, "created": created})
    for u in users:
        k = 5 if u["id"] == 1 else rng.randint(2, 8)
        conn.executemany("INSERT INTO subscriptions VALUES (?, ?)", [(u["id"], f["id"]) for f in rng.sample(forums, k)])
    return forums


def _score(rng: random.Random) -> int:
    """Heavy-tailed: most posts get a handful of votes, a few get hundreds, some are downvoted."""
    if rng.random() < 0.1:
        return -rng.randint(1, 8)
    return min(2000, int(rng.paretovariate(1.1) * 3) - 2)


def _unique_title(title: str, taken: set[str]) -> str:
    for suffix in ("", *TITLE_SUFFIXES):
        if title + suffix not in taken:
            return title + suffix
    return f"{title} ({len(taken)})"


def _posts(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random, users, forums) -> list[dict]:
    titles, sentences = data.words("post_titles.txt"), data.words("post_sentences.txt")
    end = day_start(cfg.today) - timedelta(seconds=1)
    start = day_start(cfg.today) - timedelta(days=cfg.history_days)
    forum_weights = [rng.paretovariate(1.5) for _ in forums]
    user_weights = [rng.paretovariate(1.5) for _ in users]
    user_weights[0] = 3 * sum(user_weights) / len(user_weights)  # the signed-in user has posts of their own
    drafts = []
    for _ in range(cfg.posts):
        forum = rng.choices(forums, forum_weights)[0]
        user = rng.choices(users, user_weights)[0]
        created = random_moment(rng, max(start, user["created"], forum["created"]), end)
        drafts.append((created, forum, user))
    drafts.sort(key=lambda d: (d[0], d[1]["id"], d[2]["id"]))
    taken: set[str] = set()
    posts = []
    for pid, (created, forum, user) in enumerate(drafts, start=1):
        topic = rng.choice(forum["topics"])
        title = _unique_title(rng.choice(titles).format(topic=topic), taken)
        taken.add(title)
        body = " ".join(s.format(topic=topic) for s in rng.sample(sentences, rng.randint(2, 4)))
        post = {"id": pid, "user_id": user["id"], "created": created, "score": _score(rng)}
        conn.execute("INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                     (pid, forum["id"], user["id"], title, body, post["score"], stamp(created)))
        posts.append(post)
    return posts


def _comments(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random, users, posts) -> list[dict]:
    sentences = data.words("comment_sentences.txt")
    end = day_start(cfg.today) - timedelta(seconds=1)
    post_weights = [min(max(1, p["score"]), 25) + 3 for p in posts]  # popular posts draw more comments, within reason
    by_post: dict[int, list[dict]] = {}
    comments = []
    for cid in range(1, cfg.comments + 1):
        post = rng.choices(posts, post_weights)[0]
        siblings = [c for c in by_post.get(post["id"], []) if c["depth"] < MAX_DEPTH]
        parent = rng.choice(siblings) if siblings and rng.random() < 0.45 else None
        after = parent["created"] if parent else post["created"]
        created = random_moment(rng, after, min(after + timedelta(days=14), end))
        user = rng.choice(users)
        body = " ".join(rng.sample(sentences, rng.randint(1, 2)))
        c = {"id": cid, "post_id": post["id"], "created": created, "depth": parent["depth"] + 1 if parent else 0,
             "user_id": user["id"]}
        conn.execute("INSERT INTO comments VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (cid, post["id"], parent["id"] if parent else None, user["id"], body,
                      max(-5, int(rng.paretovariate(1.6)) - 1 - (rng.random() < 0.1) * rng.randint(1, 4)),
                      stamp(created)))
        by_post.setdefault(post["id"], []).append(c)
        comments.append(c)
    return comments


def _own_votes(conn, rng: random.Random, posts, comments) -> None:
    """Votes the signed-in user (id 1) already cast; the scores count them already."""
    others = [p for p in posts if p["user_id"] != 1]
    picked = rng.sample(others, min(20, len(others)))
    conn.executemany("INSERT INTO votes VALUES (1, 'post', ?, ?)",
                     [(p["id"], 1 if i < 16 else -1) for i, p in enumerate(picked)])
    other_comments = [c for c in comments if c["user_id"] != 1]
    conn.executemany("INSERT INTO votes VALUES (1, 'comment', ?, 1)",
                     [(c["id"],) for c in rng.sample(other_comments, min(10, len(other_comments)))])


def generate_forum(conn: sqlite3.Connection, data: SeedData, cfg: SandboxConfig, rng: random.Random) -> None:
    """Fill an empty forum database (``forum.sql``)."""
    topics = sorted({t for row in data.values("forums.tsv") for t in row[3]})
    users = _users(conn, data, cfg, rng, topics)
    forums = _forums(conn, data, cfg, rng, users)
    posts = _posts(conn, data, cfg, rng, users, forums)
    comments = _comments(conn, data, cfg, rng, users, posts)
    _own_votes(conn, rng, posts, comments)
    conn.execute("INSERT INTO sessions VALUES ('forum', 1)")
