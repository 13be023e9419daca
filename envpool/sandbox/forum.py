"""The forum (modelled on WebArena's Postmill, a reddit-like site): forums, posts sorted hot/new/top,
nested comments, up/down votes, submitting, editing and deleting own posts, user pages, subscriptions,
search. User 1 is signed in at start.
"""

from __future__ import annotations

from urllib.parse import quote

from envpool.sandbox.states import StateStore
from envpool.sandbox.web import NotFound, Page, Site
from webrl.config import SandboxConfig

POST_SORTS = {"hot": ("Hot", "hot_rank(p.score, p.created_at) DESC"), "new": ("New", "p.created_at DESC"),
              "top": ("Top", "p.score DESC, p.created_at DESC")}
TITLE_MAX, BODY_MAX = 300, 10000  # characters

POST_COLUMNS = """p.*, u.username, f.name AS forum_name,
    (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comment_count,
    (SELECT value FROM votes v WHERE v.kind = 'post' AND v.target_id = p.id AND v.user_id = :me) AS my_vote"""


class Forum(Site):
    def globals(self, page: Page) -> dict:
        return super().globals(page) | {"me": signed_in(page), "sorts": POST_SORTS}


def signed_in(page: Page):
    return page.db.execute("SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.site = 'forum'").fetchone()


def my_id(page: Page) -> int:
    me = signed_in(page)
    return me["id"] if me else 0


def need_login(page: Page, back: str | None = None):
    me = signed_in(page)
    if me is None:
        page.notice("You need to log in to do that.")
        return None, page.redirect(f"/login?next={quote(back or page.request.url.path)}")
    return me, None


def post_listing(page: Page, where: str, params: dict, sort: str):
    order = POST_SORTS.get(sort, POST_SORTS["hot"])[1]
    return page.paginate(f"SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.user_id JOIN forums f "
                         f"ON f.id = p.forum_id WHERE {where} ORDER BY {order}, p.id DESC", params | {"me": my_id(page)})


def comment_tree(page: Page, post_id: int) -> list[dict]:
    """The post's comments as a tree: top-level ones by score, replies oldest first."""
    rows = page.db.execute(
        "SELECT c.*, u.username, (SELECT value FROM votes v WHERE v.kind = 'comment' AND v.target_id = c.id "
        "AND v.user_id = ?) AS my_vote FROM comments c JOIN users u ON u.id = c.user_id WHERE c.post_id = ? "
        "ORDER BY c.created_at, c.id", (my_id(page), post_id)).fetchall()
    nodes = {r["id"]: dict(r) | {"children": []} for r in rows}
    roots = []
    for node in nodes.values():
        (nodes[node["parent_id"]]["children"] if node["parent_id"] in nodes else roots).append(node)
    return sorted(roots, key=lambda n: (-n["score"], n["created_at"], n["id"]))


def safe_back(url: str, default: str) -> str:
    return url if url.startswith("/") and not url.startswith("//") else default


def check_post_fields(form: dict) -> list[str]:
    errors = []
    if not form.get("title"):
        errors.append("The title is required.")
    elif len(form["title"]) > TITLE_MAX:
        errors.append(f"The title may have at most {TITLE_MAX} characters.")
    if len(form.get("body", "")) > BODY_MAX:
        errors.append(f"The body may have at most {BODY_MAX} characters.")
    return errors


def build(store: StateStore, cfg: SandboxConfig, urls: dict[str, str]) -> Forum:
    site = Forum("forum", "Pinewood Forum", store, cfg, urls)

    def find_forum(page: Page):
        return page.one("SELECT f.*, (SELECT COUNT(*) FROM subscriptions s WHERE s.forum_id = f.id) AS subscribers, "
                        "(SELECT 1 FROM subscriptions s WHERE s.forum_id = f.id AND s.user_id = ?) AS subscribed "
                        "FROM forums f WHERE f.name = ?", (my_id(page), page.request.path_params["forum"]), "forum")

    def find_post(page: Page, forum=None):
        post = page.one(f"SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.user_id JOIN forums f "
                        "ON f.id = p.forum_id WHERE p.id = :id",
                        {"me": my_id(page), "id": page.path_int("post")}, "post")
        if forum is not None and post["forum_id"] != forum["id"]:
            raise NotFound(f"post in f/{forum['name']}")
        return post

    @site.route("/")
    async def front(page: Page):
        sort = page.arg("sort", "hot")
        posts = post_listing(page, "1", {}, sort)
        return page.render("listing.html", title="Front page", heading="All posts", forum=None, pager=posts, sort=sort)

    @site.route("/forums")
    async def forums(page: Page):
        items = page.paginate("SELECT f.*, (SELECT COUNT(*) FROM subscriptions s WHERE s.forum_id = f.id) AS subscribers, "
                              "(SELECT COUNT(*) FROM posts p WHERE p.forum_id = f.id) AS posts, "
                              "(SELECT 1 FROM subscriptions s WHERE s.forum_id = f.id AND s.user_id = ?) AS subscribed "
                              "FROM forums f ORDER BY f.name", (my_id(page),))
        return page.render("forums.html", title="Forums", pager=items)

    @site.route("/f/{forum}")
    async def forum(page: Page):
        f, sort = find_forum(page), page.arg("sort", "hot")
        posts = post_listing(page, "p.forum_id = :forum", {"forum": f["id"]}, sort)
        return page.render("listing.html", title=f["title"], heading=f["title"], forum=f, pager=posts, sort=sort)

    @site.route("/f/{forum}/{action:str}", methods=("POST",))
    async def subscription(page: Page):
        f, action = find_forum(page), page.request.path_params["action"]
        if action not in ("subscribe", "unsubscribe"):
            raise NotFound("forum action")
        form = await page.form()
        back = safe_back(form.get("back", ""), f"/f/{f['name']}")
        me, bounce = need_login(page, back)
        if bounce:
            return bounce
        with page.db:
            if action == "subscribe":
                page.db.execute("INSERT OR IGNORE INTO subscriptions VALUES (?, ?)", (me["id"], f["id"]))
            else:
                page.db.execute("DELETE FROM subscriptions WHERE user_id = ? AND forum_id = ?", (me["id"], f["id"]))
        page.notice(f"You {'subscribed to' if action == 'subscribe' else 'unsubscribed from'} f/{f['name']}.")
        return page.redirect(back)

    @site.route("/f/{forum}/{post:int}")
    async def post(page: Page):
        f = find_forum(page)
        p = find_post(page, f)
        return page.render("post.html", title=p["title"], forum=f, p=p, comments=comment_tree(page, p["id"]))

    @site.route("/f/{forum}/{post:int}/comment", methods=("POST",))
    async def add_comment(page: Page):
        f = find_forum(page)
        p = find_post(page, f)
        me, bounce = need_login(page, f"/f/{f['name']}/{p['id']}")
        if bounce:
            return bounce
        form = await page.form()
        parent = None
        if form.get("parent"):
            parent = page.one("SELECT * FROM comments WHERE id = ? AND post_id = ?",
                              (int(form["parent"]) if form["parent"].isdigit() else 0, p["id"]), "comment")
        body = form.get("body", "")
        if not body or len(body) > BODY_MAX:
            page.notice(f"Your comment was not posted: write between 1 and {BODY_MAX} characters.")
            return page.redirect(f"/f/{f['name']}/{p['id']}")
        with page.db:
            cid = page.db.execute("INSERT INTO comments (post_id, parent_id, user_id, body, score, created_at) "
                                  "VALUES (?, ?, ?, ?, 1, ?)",
                                  (p["id"], parent["id"] if parent else None, me["id"], body, page.now())).lastrowid
            page.db.execute("INSERT INTO votes VALUES (?, 'comment', ?, 1)", (me["id"], cid))  # authors upvote their own
        page.notice("Your comment was posted.")
        return page.redirect(f"/f/{f['name']}/{p['id']}#comment-{cid}")

    @site.route("/f/{forum}/{post:int}/comment/{comment:int}/reply")
    async def reply_form(page: Page):
        f = find_forum(page)
        p = find_post(page, f)
        c = page.one("SELECT c.*, u.username FROM comments c JOIN users u ON u.id = c.user_id WHERE c.id = ? "
                     "AND c.post_id = ?", (page.path_int("comment"), p["id"]), "comment")
        return page.render("reply.html", title=f"Reply to {c['username']}", forum=f, p=p, c=c)

    def own_post(page: Page, verb: str):
        """(forum, post, None) for the signed-in author of the URL's post, else (forum, post, the page to
        answer with: the login form, or why someone else may not ``verb`` it)."""
        f = find_forum(page)
        p = find_post(page, f)
        me, bounce = need_login(page)
        if bounce:
            return f, p, bounce
        if p["user_id"] != me["id"]:
            return f, p, page.render("error.html", http_status=403, title="Not your post",
                                     heading=f"You cannot {verb} this post",
                                     message=f"Only {p['username']}, who wrote it, can {verb} it.")
        return f, p, None

    @site.route("/f/{forum}/{post:int}/edit", methods=("GET", "POST"))
    async def edit_post(page: Page):
        f, p, refusal = own_post(page, "edit")
        if refusal:
            return refusal
        if page.request.method == "GET":
            return page.render("submit.html", title="Edit post", editing=p, values=dict(p), errors=[], forums=[])
        form = await page.form()
        errors = check_post_fields(form)
        if errors:
            return page.render("submit.html", http_status=400, title="Edit post", editing=p, values=form, errors=errors,
                               forums=[])
        with page.db:
            page.db.execute("UPDATE posts SET title = ?, body = ?, edited_at = ? WHERE id = ?",
                            (form["title"], form.get("body", ""), page.now(), p["id"]))
        page.notice("The post was edited.")
        return page.redirect(f"/f/{f['name']}/{p['id']}")

    @site.route("/f/{forum}/{post:int}/delete", methods=("POST",))
    async def delete_post(page: Page):
        f, p, refusal = own_post(page, "delete")
        if refusal:
            return refusal
        with page.db:
            page.db.execute("DELETE FROM votes WHERE kind = 'comment' AND target_id IN "
                            "(SELECT id FROM comments WHERE post_id = ?)", (p["id"],))
            page.db.execute("DELETE FROM votes WHERE kind = 'post' AND target_id = ?", (p["id"],))
            page.db.execute("UPDATE comments SET parent_id = NULL WHERE post_id = ?", (p["id"],))
            page.db.execute("DELETE FROM comments WHERE post_id = ?", (p["id"],))
            page.db.execute("DELETE FROM posts WHERE id = ?", (p["id"],))
        page.notice(f"Your post '{p['title']}' was deleted.")
        return page.redirect(f"/f/{f['name']}")

    @site.route("/vote", methods=("POST",))
    async def vote(page: Page):
        form = await page.form()
        kind, direction = form.get("kind"), form.get("direction")
        back = safe_back(form.get("back", ""), "/")
        me, bounce = need_login(page, back)
        if bounce:
            return bounce
        if kind not in ("post", "comment") or direction not in ("up", "down") or not form.get("id", "").isdigit():
            raise NotFound("vote target")
        table = "posts" if kind == "post" else "comments"
        target = page.one(f"SELECT id FROM {table} WHERE id = ?", (int(form["id"]),), kind)
        old = page.db.execute("SELECT value FROM votes WHERE user_id = ? AND kind = ? AND target_id = ?",
                              (me["id"], kind, target["id"])).fetchone()
        old_value = old["value"] if old else 0
        wanted = 1 if direction == "up" else -1
        new_value = 0 if old_value == wanted else wanted  # voting the same way again takes the vote back
        with page.db:
            page.db.execute(f"UPDATE {table} SET score = score + ? WHERE id = ?", (new_value - old_value, target["id"]))
            page.db.execute("DELETE FROM votes WHERE user_id = ? AND kind = ? AND target_id = ?", (me["id"], kind, target["id"]))
            if new_value:
                page.db.execute("INSERT INTO votes VALUES (?, ?, ?, ?)", (me["id"], kind, target["id"], new_value))
        return page.redirect(back)

    @site.route("/submit", methods=("GET", "POST"))
    async def submit(page: Page):
        me, bounce = need_login(page)
        if bounce:
            return bounce
        forums = page.db.execute("SELECT name, title FROM forums ORDER BY name").fetchall()
        if page.request.method == "GET":
            values = {"forum": page.arg("forum"), "title": "", "body": ""}
            return page.render("submit.html", title="Create submission", editing=None, values=values, errors=[],
                               forums=forums)
        form = await page.form()
        errors = check_post_fields(form)
        f = page.db.execute("SELECT * FROM forums WHERE name = ?", (form.get("forum", ""),)).fetchone()
        if f is None:
            errors.insert(0, "Choose the forum to post in.")
        if errors:
            return page.render("submit.html", http_status=400, title="Create submission", editing=None, values=form,
                               errors=errors, forums=forums)
        with page.db:
            pid = page.db.execute("INSERT INTO posts (forum_id, user_id, title, body, score, created_at) "
                                  "VALUES (?, ?, ?, ?, 1, ?)",
                                  (f["id"], me["id"], form["title"], form.get("body", ""), page.now())).lastrowid
            page.db.execute("INSERT INTO votes VALUES (?, 'post', ?, 1)", (me["id"], pid))
        page.notice("Your post was submitted.")
        return page.redirect(f"/f/{f['name']}/{pid}")

    @site.route("/user/{username}")
    async def user(page: Page):
        u = page.one("SELECT * FROM users WHERE username = ?", (page.request.path_params["username"],), "user")
        show = "comments" if page.arg("show") == "comments" else "posts"
        if show == "posts":
            items = post_listing(page, "p.user_id = :user", {"user": u["id"]}, "new")
        else:
            items = page.paginate("SELECT c.*, p.title AS post_title, f.name AS forum_name FROM comments c "
                                  "JOIN posts p ON p.id = c.post_id JOIN forums f ON f.id = p.forum_id "
                                  "WHERE c.user_id = ? ORDER BY c.created_at DESC, c.id DESC", (u["id"],))
        counts = page.db.execute("SELECT (SELECT COUNT(*) FROM posts WHERE user_id = :u) AS posts, "
                                 "(SELECT COUNT(*) FROM comments WHERE user_id = :u) AS comments, "
                                 "(SELECT COALESCE(SUM(score), 0) FROM posts WHERE user_id = :u) AS post_points",
                                 {"u": u["id"]}).fetchone()
        subs = page.db.execute("SELECT f.name FROM subscriptions s JOIN forums f ON f.id = s.forum_id "
                               "WHERE s.user_id = ? ORDER BY f.name", (u["id"],)).fetchall()
        return page.render("user.html", title=u["username"], u=u, show=show, pager=items, counts=counts, subs=subs)

    @site.route("/search")
    async def search(page: Page):
        q = page.arg("q")
        words = q.split()[:8]
        where = " AND ".join(["(p.title LIKE :w%d OR p.body LIKE :w%d)" % (i, i) for i in range(len(words))]) or "0"
        posts = post_listing(page, where, {f"w{i}": f"%{w}%" for i, w in enumerate(words)}, page.arg("sort", "new"))
        heading = f"Search results for '{q}'" if q else "Search"
        return page.render("listing.html", title=heading, heading=heading, forum=None, pager=posts,
                           sort=page.arg("sort", "new"), query=q)

    @site.route("/login", methods=("GET", "POST"))
    async def login(page: Page):
        nxt = safe_back(page.arg("next", "/"), "/")
        if page.request.method == "GET":
            return page.render("login.html", title="Log in", next=nxt, username="", error=None)
        form = await page.form()
        row = page.db.execute("SELECT id FROM users WHERE lower(username) = lower(?) AND password = ?",
                              (form.get("username", ""), form.get("password", ""))).fetchone()
        if row is None:
            return page.render("login.html", http_status=401, title="Log in", next=nxt,
                               username=form.get("username", ""), error="The username or the password is wrong.")
        with page.db:
            page.db.execute("INSERT OR REPLACE INTO sessions VALUES ('forum', ?)", (row["id"],))
        return page.redirect(nxt)

    @site.route("/logout", methods=("POST",))
    async def logout(page: Page):
        with page.db:
            page.db.execute("DELETE FROM sessions WHERE site = 'forum'")
        page.notice("You are logged out.")
        return page.redirect("/")

    return site
