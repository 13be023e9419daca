"""The control point of a running ``webrl train`` job: a named Ray actor (``webrl-control`` in the job's
namespace, ``ray.namespace``) that holds the run's latest status snapshot and the worker and browser-pool
counts a user asked for.

- the driver posts a snapshot as the run goes (:class:`ControlLink`, at most every ``interval_s``);
- ``webrl status`` reads it (:func:`find_control`, :func:`status_table`);
- ``webrl scale rollout N`` / ``webrl scale browsers N`` post the wanted count; the fleet polls the actor
  between dispatches (through its :class:`ControlLink`) and adds or retires workers and browser pools.

:class:`RunControl` is a plain class (tests drive it directly); the actor is a thin shell over it. It is
owned by the driver, so it ends with the run: no actor, no run.
"""

from __future__ import annotations

import time
from typing import Callable

CONTROL_ACTOR = "webrl-control"
SCALABLE = {"rollout": "rollout workers", "browsers": "browser pools"}


class NoRunError(RuntimeError):
    """No webrl run is going in the namespace; the message says how to start one."""


class RunControl:
    """The run's status snapshot and the wanted counts (``rollout``: workers, ``browsers``: BrowserPool actors)."""

    def __init__(self, run: str = ""):
        self.run = run
        self.snapshot: dict = {}
        self.posted_at: float | None = None
        self.wanted: dict[str, int | None] = dict.fromkeys(SCALABLE)

    def post(self, snapshot: dict) -> None:
        """The driver's latest view of the run (it replaces the last one)."""
        self.snapshot, self.posted_at = snapshot, time.time()

    def status(self) -> dict:
        """The latest snapshot with the run's name, its age and the wanted counts."""
        age = None if self.posted_at is None else round(time.time() - self.posted_at, 1)
        return {"run": self.run, "age_s": age, "wanted": dict(self.wanted), **self.snapshot}

    def scale(self, kind: str, n: int) -> dict:
        """Ask for ``n`` rollout workers (``kind`` rollout) or browser pools (``browsers``); returns the wanted counts."""
        if kind not in SCALABLE:
            raise ValueError(f"cannot scale {kind!r}: choose one of {', '.join(SCALABLE)}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the run needs at least 1 of its {SCALABLE[kind]}, not {n!r}")
        self.wanted[kind] = n
        return dict(self.wanted)

    def wanted_counts(self) -> dict[str, int | None]:
        return dict(self.wanted)


# ---- the actor ---------------------------------------------------------------------------------
def start_control(run: str, namespace: str):
    """Start the run's control actor (named ``webrl-control`` in ``namespace``, owned by this driver)."""
    import ray

    deadline = time.monotonic() + 10
    while (old := find_control(namespace)) is not None:
        try:
            ray.get(old.status.remote(), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if time.monotonic() < deadline:  # the last run's actor, killed as it closed: its name frees shortly
                time.sleep(0.2)
                continue
        raise RuntimeError(f"another webrl run is going in Ray namespace {namespace!r} (see `webrl status`); "
                           "set ray.namespace to another name to run both")
    return ray.remote(num_cpus=0, max_restarts=-1)(RunControl).options(
        name=CONTROL_ACTOR, namespace=namespace).remote(run)


def find_control(namespace: str):
    """The control actor of the run going in ``namespace`` (Ray connected), or None."""
    import ray

    try:
        return ray.get_actor(CONTROL_ACTOR, namespace=namespace)
    except ValueError:
        return None


def connect(address: str | None, namespace: str):
    """Join the cluster at ``address`` (``auto``: the one this node belongs to) in ``namespace`` and return the
    run's control actor; :class:`NoRunError` when there is no cluster or no run."""
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address=address or "auto", namespace=namespace, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise NoRunError(f"no Ray cluster at {address or 'auto'} ({str(e).splitlines()[0]}); start a run with "
                             "`webrl train` (it starts a cluster) or pass --address of a running one") from None
    handle = find_control(namespace)
    if handle is None:
        where = ray.get_runtime_context().gcs_address or address or "auto"
        raise NoRunError(f"no webrl run in namespace {namespace!r} on cluster {where}; start one with "
                         "webrl train (or pass the run's --set ray.namespace=...)")
    return handle


class ControlLink:
    """The driver's side: keeps the run-level part of the status (phase, stage, version, ...), posts it merged
    with the fleet's live view at most every ``interval_s``, and fetches the wanted counts without blocking."""

    def __init__(self, handle, interval_s: float = 1.0):
        self.handle, self.interval_s = handle, interval_s
        self.fields: dict = {}
        self.wanted: dict[str, int | None] = dict.fromkeys(SCALABLE)
        self._asked = None  # the ObjectRef of a wanted_counts call in flight
        self._posted = self._polled = 0.0

    def update(self, live: Callable[[], dict] | None = None, **fields) -> None:
        """Change run-level fields (``phase=2, stage="train"``) and post at once."""
        self.fields.update(fields)
        self._post(live)

    def tick(self, live: Callable[[], dict] | None = None) -> dict[str, int | None]:
        """Post (``live()`` merged in) and ask for the wanted counts, each at most every ``interval_s``; returns
        the wanted counts known so far. Cheap enough to call on every pass of a dispatch loop."""
        now = time.monotonic()
        if now - self._posted >= self.interval_s:
            self._post(live)
        self._poll(now)
        return self.wanted

    def _post(self, live: Callable[[], dict] | None) -> None:
        import ray

        snapshot = dict(self.fields) | (live() if live else {})
        try:
            self.handle.post.remote(snapshot | {"posted": time.time()})
        except ray.exceptions.RayError:  # the status is for people: a lost post is not a failed run
            pass
        self._posted = time.monotonic()

    def _poll(self, now: float) -> None:
        import ray

        if self._asked is not None:
            ready, _ = ray.wait([self._asked], timeout=0)
            if not ready:
                return
            try:
                self.wanted = ray.get(self._asked)
            except ray.exceptions.RayError:
                pass
            self._asked = None
        if now - self._polled >= self.interval_s:
            self._asked, self._polled = self.handle.wanted_counts.remote(), now

    def wait_wanted(self, timeout_s: float = 5.0) -> dict[str, int | None]:
        """The wanted counts now (blocking): for the driver between stages."""
        import ray

        self.wanted = ray.get(self.handle.wanted_counts.remote(), timeout=timeout_s)
        return self.wanted


# ---- webrl status / webrl scale ----------------------------------------------------------------
def _rate(row: dict) -> str:
    k, n = row.get("successes", 0), row.get("episodes", 0)
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def status_rows(st: dict) -> list[tuple[str, str]]:
    """(label, value) lines of a status snapshot, in reading order; what is unknown yet shows as '-'."""
    ep, workers, pools = st.get("episodes", {}), st.get("workers", {}), st.get("pools", {})
    wanted, stale = st.get("wanted", {}), st.get("staleness", {})
    health = pools.get("health", [])
    alive = sum(bool(p.get("alive")) for p in health)
    rows = [
        ("run", f"{st.get('run') or '-'}" + (f"  (updated {st['age_s']:.0f} s ago)" if st.get("age_s") is not None else "")),
        ("phase", f"{st.get('phase', '-')} of {st.get('phases', '-')}: {st.get('stage', '-')}"),
        ("policy version", str(st.get("version", "-"))),
        ("episodes", f"{ep.get('done', 0)} done, {ep.get('running', 0)} running" if ep else "-"),
        ("env steps/s", "-" if st.get("env_steps_per_s") is None else f"{st['env_steps_per_s']:.1f}"),
        ("staleness", "-" if stale.get("last") is None else f"last {stale['last']}, max {stale['max']} versions"),
    ]
    for suite, row in (st.get("success") or {}).items():
        rows.append((f"success {suite}", _rate(row)))
    for split in ("train", "test"):
        if st.get(f"last_{split}"):
            rows.append((f"last phase {split}", _rate(st[f"last_{split}"])))
    w = (f"{workers.get('active', 0)} active, {workers.get('retiring', 0)} retiring, {workers.get('restarting', 0)} "
         f"restarting; {workers.get('deaths', 0)} deaths, {workers.get('episode_reruns', 0)} reruns") if workers else "-"
    rows.append(("rollout workers", w + (f"  (wanted {wanted['rollout']})" if wanted.get("rollout") else "")))
    p = (f"{pools.get('active', 0)} active, {pools.get('retiring', 0)} retiring; {alive}/{len(health)} browsers up, "
         f"{sum(x.get('running_episodes') or 0 for x in health)} episodes in contexts, "
         f"{sum(x.get('restarts') or 0 for x in health)} browser restarts") if pools else "-"
    rows.append(("browser pools", p + (f"  (wanted {wanted['browsers']})" if wanted.get("browsers") else "")))
    if st.get("replay_size") is not None:
        rows.append(("replay buffer", f"{st['replay_size']} trajectories"))
    return rows


def status_table(st: dict):
    """``webrl status``'s table (rich)."""
    from rich.table import Table

    table = Table(title="webrl status", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in status_rows(st):
        table.add_row(label, value)
    return table
