"""Task templates on the forum (Pinewood Forum): forums' top and newest posts, subscribers, posts found
by search, users' activity; submitting, editing and deleting posts, comments, replies, votes,
subscriptions, and logging in as someone else. User 1 (LunarTiger) is logged in when an episode
starts. See :mod:`envpool.sandbox.task_templates` for the vocabulary.
"""

from __future__ import annotations

from envpool.sandbox.shop_rules import DEFAULT_PASSWORD
from envpool.sandbox.task_plan import Target, answer, click, search, select, type_
from envpool.sandbox.task_templates import (DONE, INFO, NAV, STATE, Draft, SiteData, Template, all_of, includes,
                                            registry, sql_text, state, url_is)

TEMPLATES: list[Template] = []
register = registry(TEMPLATES)

POSTS = ("SELECT p.*, u.username, f.name AS forum, (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comments "
         "FROM posts p JOIN users u ON u.id = p.user_id JOIN forums f ON f.id = p.forum_id")


# ---- helpers: how to get to a page ------------------------------------------------------------------
def me(data: SiteData) -> str:
    return data.value("forum", "SELECT username FROM users WHERE id = 1")


def to_forum(data: SiteData, forum: str) -> list:
    """From any forum page to f/<forum> through the list of forums (it has pages)."""
    names = [r["name"] for r in data.rows("forum", "SELECT name FROM forums ORDER BY name")]
    pages = names.index(forum) // data.cfg.page_size
    return [click(href="/forums"), *[click(text="Next page")] * pages, click(href=f"/f/{forum}")]


def found_on_first_page(data: SiteData, post) -> bool:
    """Whether searching the post's title lists it on the first page of results (newest first)."""
    words = post["title"].split()[:8]
    where = " AND ".join(["(title LIKE ? OR body LIKE ?)"] * len(words))
    ids = [r["id"] for r in data.rows("forum", f"SELECT id FROM posts WHERE {where} ORDER BY created_at DESC, id DESC "
                                      f"LIMIT {data.cfg.page_size}", tuple(f"%{w}%" for w in words for _ in range(2)))]
    return post["id"] in ids


def findable(data: SiteData, key: str, k: int, where: str = "1") -> list:
    """``k`` posts (matching ``where``) that a search for their title finds on its first page."""
    found = []
    for p in data.shuffled(data.rows("forum", f"SELECT * FROM ({POSTS}) WHERE {where} ORDER BY id"), key):
        if len(found) == k:
            break
        if found_on_first_page(data, p):
            found.append(p)
    return found


def open_post(p) -> list:
    """From any forum page: search the post's title, open the post."""
    return [search(p["title"], name="q"), click(href=f"/f/{p['forum']}/{p['id']}")]


def forums_by(data: SiteData, key: str) -> list:
    return data.shuffled(data.rows("forum", "SELECT * FROM forums ORDER BY id"), key)


# ---- information-seeking ----------------------------------------------------------------------------
def _ranked(data: SiteData, forum_id: int, order: str) -> list:
    return data.rows("forum", f"SELECT * FROM posts WHERE forum_id = ? ORDER BY {order}, id DESC LIMIT 2", (forum_id,))


@register("forum-top-post", "What is the title of the highest-scoring post of all time in f/{{forum}}?", INFO)
def top_post(data: SiteData):
    first = [f for f in forums_by(data, "forum-top-post") if f["name"] == "coffee"]  # the first example task
    for f in first + [f for f in forums_by(data, "forum-top-post") if f["name"] != "coffee"]:
        top = _ranked(data, f["id"], "score DESC, created_at DESC")
        if len(top) == 2 and top[0]["score"] > top[1]["score"]:
            plan = [*to_forum(data, f["name"]), click(text="Top"), answer(top[0]["title"])]
            yield Draft({"forum": f["name"]}, plan, includes(top[0]["title"]))


@register("forum-newest-post", "What is the title of the newest post in f/{{forum}}?", INFO)
def newest_post(data: SiteData):
    for f in forums_by(data, "forum-newest-post"):
        post = _ranked(data, f["id"], "created_at DESC")[0]
        plan = [*to_forum(data, f["name"]), click(text="New"), answer(post["title"])]
        yield Draft({"forum": f["name"]}, plan, includes(post["title"]))


@register("forum-subscribers", "How many subscribers does f/{{forum}} have?", INFO, count=3)
def subscribers(data: SiteData):
    names = [r["name"] for r in data.rows("forum", "SELECT name FROM forums ORDER BY name")]
    for f in forums_by(data, "forum-subscribers"):
        n = data.value("forum", "SELECT COUNT(*) FROM subscriptions WHERE forum_id = ?", (f["id"],))
        pages = names.index(f["name"]) // data.cfg.page_size
        plan = [click(href="/forums"), *[click(text="Next page")] * pages, answer(str(n))]
        yield Draft({"forum": f["name"]}, plan, includes(str(n)))


@register("forum-post-author", "Who submitted the post titled '{{title}}'?", INFO)
def post_author(data: SiteData):
    for p in findable(data, "forum-post-author", 4, "user_id != 1"):
        yield Draft({"title": p["title"]}, [search(p["title"], name="q"), answer(p["username"])], includes(p["username"]))


@register("forum-post-comments", "How many comments does the post '{{title}}' have?", INFO)
def post_comments(data: SiteData):
    for p in findable(data, "forum-post-comments", 4, "comments > 0"):
        yield Draft({"title": p["title"]}, [search(p["title"], name="q"), answer(str(p["comments"]))],
                    includes(str(p["comments"])))


def _user_stats(data: SiteData, key: str) -> list:
    """Posts by users other than user 1 that a search finds, one per user, with the user's counts."""
    seen, out = set(), []
    for p in findable(data, key, 40, "user_id != 1"):
        if p["user_id"] not in seen:
            seen.add(p["user_id"])
            counts = data.one("forum", "SELECT (SELECT COUNT(*) FROM comments WHERE user_id = :u) AS comments, "
                              "(SELECT COALESCE(SUM(score), 0) FROM posts WHERE user_id = :u) AS points", {"u": p["user_id"]})
            out.append((p, counts))
    return out


@register("forum-user-comments", "How many comments has the user {{user}} written?", INFO, count=3)
def user_comments(data: SiteData):
    for p, counts in _user_stats(data, "forum-user-comments"):
        plan = [search(p["title"], name="q"), click(href=f"/user/{p['username']}", after=Target(href=f"/f/{p['forum']}/{p['id']}")),
                answer(str(counts["comments"]))]
        yield Draft({"user": p["username"]}, plan, includes(str(counts["comments"])))


@register("forum-user-points", "How many points have the posts of {{user}} earned in total?", INFO, count=3,
          held_out=True)
def user_points(data: SiteData):
    for p, counts in _user_stats(data, "forum-user-points"):
        plan = [search(p["title"], name="q"), click(href=f"/user/{p['username']}", after=Target(href=f"/f/{p['forum']}/{p['id']}")),
                answer(str(counts["points"]))]
        yield Draft({"user": p["username"]}, plan, includes(str(counts["points"])))


@register("forum-sorted-forum", "Show me the {{order}} posts of f/{{forum}}.", NAV, count=3)
def sorted_forum(data: SiteData):
    for i, f in enumerate(forums_by(data, "forum-sorted-forum")):
        key, words, link = (("top", "top-scoring", "Top"), ("new", "newest", "New"))[i % 2]
        plan = [*to_forum(data, f["name"]), click(text=link), answer(DONE)]
        yield Draft({"order": words, "forum": f["name"]}, plan, url_is(f"__FORUM__/f/{f['name']}?sort={key}"))


# ---- state-changing ---------------------------------------------------------------------------------
NEW_POSTS = [
    ("books", "Looking for a cozy mystery series", "Any suggestions for a series set in a small town?"),
    ("gardening", "Tomatoes splitting after rain", "Is there anything I can do this late in the season?"),
    ("cycling", "First century ride next month", "How should I pace the last thirty miles?"),
    ("photography", "Cleaning an old prime lens", "There is haze inside; is it worth a repair?"),
    ("cooking", "Weeknight dal recipe", "Red lentils, cumin and a lot of garlic: twenty minutes start to finish."),
]


def my_post_sql(title: str, user_id: int = 1) -> str:
    return (f"SELECT f.name, p.body FROM posts p JOIN forums f ON f.id = p.forum_id WHERE p.user_id = {user_id} "
            f"AND p.title = {sql_text(title)}")


@register("forum-submit-post", "Submit a post to f/{{forum}} titled '{{title}}' with the body '{{body}}'.", STATE)
def submit_post(data: SiteData):
    for i, (forum, title, body) in enumerate(NEW_POSTS[:4]):
        fill = [type_(title, name="title"), type_(body, name="body"), click(text="Create submission"), answer(DONE)]
        if i % 2 == 0:  # from the forum's own page, where the form knows the forum
            draft = Draft({"forum": forum, "title": title, "body": body}, [click(text="Submit a new post"), *fill],
                          {}, start=f"/f/{forum}")
        else:  # from the front page: choose the forum in the form
            draft = Draft({"forum": forum, "title": title, "body": body},
                          [click(text="Submit"), select(forum, name="forum"), *fill], {})
        draft.eval = state("forum", my_post_sql(title), includes=[forum, body])
        yield draft


COMMENTS = ["Thanks for sharing, this was really helpful.", "I had the same problem last year.",
            "Could you post an update when you try it?", "Great write-up, bookmarking this."]


@register("forum-comment", "Post the comment '{{text}}' on the post '{{title}}'.", STATE)
def comment(data: SiteData):
    for p, text in zip(findable(data, "forum-comment", 4), COMMENTS):
        plan = [*open_post(p), type_(text, name="body"), click(text="Post comment"), answer(DONE)]
        sql = (f"SELECT body, parent_id FROM comments WHERE post_id = {p['id']} AND user_id = 1 "
               "ORDER BY created_at DESC, id DESC LIMIT 1")
        yield Draft({"text": text, "title": p["title"]}, plan, state("forum", sql, exact=f"{text}\t"))


@register("forum-reply", "Reply '{{text}}' to the comment of {{user}} on the post '{{title}}'.", STATE, count=3)
def reply(data: SiteData):
    replies = ["Agreed, that matches what I saw.", "Which brand did you end up with?", "Good point, I had not thought of that."]
    picks = []
    for p in findable(data, "forum-reply", 40, "comments BETWEEN 2 AND 8"):
        rows = data.rows("forum", "SELECT c.id, u.username, c.user_id FROM comments c JOIN users u ON u.id = c.user_id "
                         "WHERE c.post_id = ? ORDER BY c.id", (p["id"],))
        solo = [r for r in rows if r["user_id"] != 1 and sum(x["user_id"] == r["user_id"] for x in rows) == 1]
        if solo:
            picks.append((p, solo[0]))
    for (p, c), text in zip(picks, replies):
        plan = [*open_post(p), click(href=f"/f/{p['forum']}/{p['id']}/comment/{c['id']}/reply"), type_(text, name="body"),
                click(text="Post reply"), answer(DONE)]
        sql = f"SELECT body FROM comments WHERE parent_id = {c['id']} AND user_id = 1 ORDER BY id DESC LIMIT 1"
        yield Draft({"text": text, "user": c["username"], "title": p["title"]}, plan, state("forum", sql, exact=text))


@register("forum-vote", "{{direction}} the post '{{title}}'.", STATE)
def vote(data: SiteData):
    unvoted = "user_id != 1 AND id NOT IN (SELECT target_id FROM votes WHERE user_id = 1 AND kind = 'post')"
    for i, p in enumerate(findable(data, "forum-vote", 4, unvoted)):
        direction, value = (("Upvote", 1), ("Downvote", -1))[i % 2]
        plan = [search(p["title"], name="q"), click(label=f"{direction} post {p['id']}"), answer(DONE)]
        sql = (f"SELECT v.value, p.score FROM posts p LEFT JOIN votes v ON v.kind = 'post' AND v.target_id = p.id "
               f"AND v.user_id = 1 WHERE p.id = {p['id']}")
        yield Draft({"direction": direction, "title": p["title"]}, plan,
                    state("forum", sql, exact=f"{value}\t{p['score'] + value}"))


def subscribed_sql(forum: str) -> str:
    return (f"SELECT COUNT(*) FROM subscriptions s JOIN forums f ON f.id = s.forum_id WHERE s.user_id = 1 "
            f"AND f.name = {sql_text(forum)}")


@register("forum-subscribe", "Subscribe me to f/{{forum}}.", STATE, count=3)
def subscribe(data: SiteData):
    names = [r["name"] for r in data.rows("forum", "SELECT name FROM forums ORDER BY name")]
    mine = {r["name"] for r in data.rows("forum", "SELECT f.name FROM subscriptions s JOIN forums f ON f.id = s.forum_id "
                                         "WHERE s.user_id = 1")}
    for f in [f for f in forums_by(data, "forum-subscribe") if f["name"] not in mine][:3]:
        pages = names.index(f["name"]) // data.cfg.page_size
        plan = [click(href="/forums"), *[click(text="Next page")] * pages,
                click(text="Subscribe", after=Target(href=f"/f/{f['name']}")), answer(DONE)]
        yield Draft({"forum": f["name"]}, plan, state("forum", subscribed_sql(f["name"]), exact="1"))


@register("forum-unsubscribe", "Unsubscribe me from f/{{forum}}.", STATE, count=3)
def unsubscribe(data: SiteData):
    mine = data.rows("forum", "SELECT f.name FROM subscriptions s JOIN forums f ON f.id = s.forum_id WHERE s.user_id = 1 "
                     "ORDER BY f.name")
    user = me(data)
    for f in data.shuffled(mine, "forum-unsubscribe")[:3]:
        plan = [click(href=f"/user/{user}", nth=0), click(href=f"/f/{f['name']}", nth=0), click(text="Unsubscribe"),
                answer(DONE)]
        yield Draft({"forum": f["name"]}, plan, state("forum", subscribed_sql(f["name"]), exact="0"))


def my_posts(data: SiteData, key: str) -> list:
    """User 1's posts on the first page of their user page (newest first)."""
    rows = data.rows("forum", f"SELECT * FROM ({POSTS}) WHERE user_id = 1 ORDER BY created_at DESC, id DESC "
                     f"LIMIT {data.cfg.page_size}")
    return data.shuffled(rows, key)


@register("forum-edit-title", "Change the title of my post '{{title}}' to '{{new_title}}'.", STATE, count=3)
def edit_title(data: SiteData):
    user = me(data)
    for p in my_posts(data, "forum-edit-title")[:3]:
        new_title = f"{p['title']} [solved]"
        plan = [click(href=f"/user/{user}", nth=0), click(href=f"/f/{p['forum']}/{p['id']}", nth=0), click(text="Edit"),
                type_(new_title, name="title"), click(text="Save"), answer(DONE)]
        sql = f"SELECT title, edited_at IS NOT NULL FROM posts WHERE id = {p['id']}"
        yield Draft({"title": p["title"], "new_title": new_title}, plan, state("forum", sql, exact=f"{new_title}\t1"))


@register("forum-delete-post", "Delete my post '{{title}}'.", STATE, count=3, held_out=True)
def delete_post(data: SiteData):
    user = me(data)
    count_mine = data.value("forum", "SELECT COUNT(*) FROM posts WHERE user_id = 1")
    for p in my_posts(data, "forum-delete-post")[:3]:
        plan = [click(href=f"/user/{user}", nth=0), click(href=f"/f/{p['forum']}/{p['id']}", nth=0),
                click(text="Delete"), answer(DONE)]
        yield Draft({"title": p["title"]}, plan,
                    all_of(state("forum", f"SELECT COUNT(*) FROM posts WHERE id = {p['id']}", exact="0"),
                           state("forum", "SELECT COUNT(*) FROM posts WHERE user_id = 1", exact=str(count_mine - 1))))


@register("forum-login-post", "Log out, log in as {{user}} (password {{password}}) and submit a post titled "
          "'{{title}}' to f/{{forum}}.", STATE, count=3, held_out=True)
def login_post(data: SiteData):
    users = data.sample("forum", "SELECT * FROM users WHERE id > 1 ORDER BY id", 3, "forum-login-post")
    for u, (forum, title, _) in zip(users, NEW_POSTS[2:]):
        plan = [click(text="Log out"), click(text="Log in", tag="a"), type_(u["username"], name="username"),
                type_(DEFAULT_PASSWORD, name="password"), click(text="Log in", tag="button"), click(text="Submit"),
                select(forum, name="forum"), type_(title, name="title"), click(text="Create submission"), answer(DONE)]
        yield Draft({"user": u["username"], "password": DEFAULT_PASSWORD, "title": title, "forum": forum}, plan,
                    state("forum", my_post_sql(title, u["id"]), includes=[forum]))
