-- The forum's database. One copy per episode. Dates are text 'YYYY-MM-DD HH:MM:SS'.

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- today, seed

CREATE TABLE users (
    id INTEGER PRIMARY KEY,                         -- 1 is the default user, signed in on the forum
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    about TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE forums (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,                      -- 'books' (URL /f/<name>)
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    creator_id INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL
);

CREATE TABLE subscriptions (
    user_id INTEGER NOT NULL REFERENCES users(id),
    forum_id INTEGER NOT NULL REFERENCES forums(id),
    PRIMARY KEY (user_id, forum_id)
);

CREATE TABLE posts (
    id INTEGER PRIMARY KEY,                         -- URL /f/<forum>/<id>
    forum_id INTEGER NOT NULL REFERENCES forums(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    score INTEGER NOT NULL,                         -- net votes, every vote included
    created_at TEXT NOT NULL,
    edited_at TEXT                                  -- NULL: never edited
);
CREATE INDEX posts_forum ON posts(forum_id);
CREATE INDEX posts_user ON posts(user_id);

CREATE TABLE comments (
    id INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL REFERENCES posts(id),
    parent_id INTEGER REFERENCES comments(id),      -- NULL: a top-level comment
    user_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    score INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX comments_post ON comments(post_id);
CREATE INDEX comments_user ON comments(user_id);

CREATE TABLE votes (                                -- votes of known users (counted in the scores)
    user_id INTEGER NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL CHECK (kind IN ('post', 'comment')),
    target_id INTEGER NOT NULL,
    value INTEGER NOT NULL CHECK (value IN (-1, 1)),
    PRIMARY KEY (user_id, kind, target_id)
);

CREATE TABLE sessions (                             -- who is signed in: site 'forum' -> a user id
    site TEXT PRIMARY KEY,
    user_id INTEGER
);
