"""WebArena-in-a-box: three bundled websites with per-episode isolated state.

- **shop** (``shop.py``): a storefront like WebArena's OneStopShop: nested categories, search,
  products with attributes and reviews, cart, checkout, order history, wishlist, account.
- **admin** (``admin.py``): the shop's back office on the same database: orders with filters and
  status changes, product editing, customers, a sales report over dates, review moderation.
- **forum** (``forum.py``): a reddit-like forum like WebArena's Postmill: forums, hot/new/top posts,
  nested comments, votes, submitting and editing posts, user pages, subscriptions.

The data is generated deterministically from ``env.sandbox.seed`` and the word lists in ``data/``
(``build.py``, ``gen_shop.py``, ``gen_forum.py``); the schemas, with a comment on every column, are
``shop.sql`` and ``forum.sql``. One server process (``server.py``) serves each site on its own port
and a token-guarded control API (``control.py``) on another; each episode works on its own
in-memory copy of the databases (``states.py``), chosen by the ``webrl_episode`` cookie.
``process.py`` starts the server and talks to the control API; ``serve.py`` is ``webrl sites serve``;
the ``sandbox`` suite (``envpool/suites/sandbox.py``) runs tasks from ``tasks/*.jsonl``
(``task_specs.py``).

Who is signed in at start: customer 1 on the shop, the administrator on the admin, user 1 on the
forum. Every generated account's password is ``Password123`` (``shop_rules.DEFAULT_PASSWORD``).
"""
