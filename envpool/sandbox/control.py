"""The control API, on its own loopback port: create and discard episode states, and run read-only
SQL against an episode's database for state checks. Every call but ``/health`` needs the token the
server was started with (``Authorization: Bearer <token>``).

    POST   /episodes/{id}          create the episode's state          -> {"episode_id", "ms"}
    DELETE /episodes/{id}          discard it                          -> {"discarded": true|false}
    POST   /episodes/{id}/query    {"site": "shop", "sql": "SELECT ...", "params": [...]}
                                   -> {"columns": [...], "rows": [[...]], "truncated": false}
    GET    /episodes               ids of the live episode states      -> {"episodes": [...]}
    GET    /health                 no token needed                     -> {"ok": true, "episodes": n}

The id ``browse`` names the shared state of requests without an episode cookie (query only).
"""

from __future__ import annotations

import json
import secrets

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from envpool.sandbox.states import StateError, StateStore, UnknownEpisode

MAX_QUERY_ROWS = 1000


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_control(store: StateStore, token: str) -> Starlette:
    def guarded(handler):
        async def endpoint(request: Request):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error(401, "missing or wrong token: send the header 'Authorization: Bearer <token>' with the "
                                   "token the sandbox server was started with")
            try:
                return await handler(request)
            except UnknownEpisode as e:
                return _error(404, str(e))
            except StateError as e:
                return _error(400, str(e))

        return endpoint

    async def create(request: Request):
        eid = request.path_params["id"]
        return JSONResponse({"episode_id": eid, "ms": round(store.create(eid), 3)})

    async def discard(request: Request):
        return JSONResponse({"discarded": store.discard(request.path_params["id"])})

    async def query(request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, 'the body must be JSON: {"site": "shop", "sql": "SELECT ...", "params": []}')
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str) or not isinstance(body.get("site"), str):
            return _error(400, 'the body needs "site" (shop, admin or forum) and "sql" (one SELECT statement)')
        params = body.get("params") or []
        if not isinstance(params, (list, dict)):
            return _error(400, '"params" must be a list (for ?) or an object (for :name)')
        return JSONResponse(store.query(request.path_params["id"], body["site"], body["sql"], params, MAX_QUERY_ROWS))

    async def listing(request: Request):
        return JSONResponse({"episodes": sorted(store.episodes)})

    async def health(request: Request):
        return JSONResponse({"ok": True, "episodes": len(store.episodes)})

    return Starlette(routes=[
        Route("/health", health),
        Route("/episodes", guarded(listing)),
        Route("/episodes/{id}", guarded(create), methods=["POST"]),
        Route("/episodes/{id}", guarded(discard), methods=["DELETE"]),
        Route("/episodes/{id}/query", guarded(query), methods=["POST"]),
    ])
