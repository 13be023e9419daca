"""Sandbox task files: JSONL under ``envpool/sandbox/tasks/``, one task a line, in WebArena's
task-config shape plus our ``oracle`` and ``split``::

    {"task_id": "sandbox/shop-cart-add-0", "sites": ["shop"], "intent": "Add ... to my cart",
     "start_url": "__SHOP__/", "eval": {"eval_types": ["state_check"], "state_check": [...]},
     "oracle": ["do(action=\\"Click\\", element=\\"12\\")", ...], "split": "train"}

``start_url`` and any string in ``eval`` may use the placeholders ``__SHOP__``, ``__ADMIN__`` and
``__FORUM__``, which become the live sites' base URLs. Other WebArena keys (``intent_template``,
``instantiation_dict``, ``require_reset``, ...) are kept as they are. A broken line is refused with
an error naming the file and the line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SITE_NAMES = ("shop", "admin", "forum")
PLACEHOLDERS = {f"__{site.upper()}__": site for site in SITE_NAMES}
TASK_ID = re.compile(r"sandbox/(shop|admin|forum)-[a-z0-9]+(?:-[a-z0-9]+)*-\d+")


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file and the line."""


class TaskSpec(BaseModel):
    """One sandbox task as written in a task file."""

    model_config = ConfigDict(extra="allow")

    task_id: str = Field(..., description="sandbox/<site>-<template>-<n>, e.g. sandbox/shop-cart-add-0")
    sites: list[Literal["shop", "admin", "forum"]] = Field(default_factory=list, description="Sites the task uses.")
    intent: str = Field(..., min_length=1, description="The instruction the agent gets.")
    start_url: str = Field(..., description="Where the episode starts; may use __SHOP__, __ADMIN__, __FORUM__.")
    eval: dict[str, Any] | None = Field(None, description="WebArena eval object (plus state_check); None: judged by the ORM.")
    oracle: list[str] = Field(default_factory=list, description="Actions in our grammar that solve the task.")
    split: Literal["train", "test"] = Field("train", description="The fixed split the task belongs to.")
    # where it came from, for errors
    source: str = Field("", exclude=True)


def substitute(value, urls: dict[str, str]):
    """``value`` with every site placeholder in its strings replaced by that site's base URL."""
    if isinstance(value, str):
        for token, site in PLACEHOLDERS.items():
            value = value.replace(token, urls.get(site, token))
        return value
    if isinstance(value, list):
        return [substitute(v, urls) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, urls) for k, v in value.items()}
    return value


def _problem(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "the line"
    return f"{where}: {first['msg']}"


def read_task_file(path: Path, check_eval=None) -> list[TaskSpec]:
    """The tasks of one JSONL file; ``check_eval(eval, task_id)`` may refuse a task's eval object."""
    specs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"task file {path}, line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskFileError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); one task per line") from None
        try:
            spec = TaskSpec.model_validate(raw)
        except ValidationError as e:
            raise TaskFileError(f"{where}: {_problem(e)}") from None
        if not TASK_ID.fullmatch(spec.task_id):
            raise TaskFileError(f"{where}: task_id {spec.task_id!r} must look like sandbox/<site>-<template>-<n> "
                                "with site shop, admin or forum (e.g. sandbox/shop-cart-add-0)")
        if not spec.start_url.startswith(tuple(PLACEHOLDERS)):
            raise TaskFileError(f"{where}: start_url {spec.start_url!r} must start with {', '.join(PLACEHOLDERS)}")
        if spec.eval is not None and check_eval is not None:
            try:
                check_eval(spec.eval, spec.task_id)
            except ValueError as e:
                raise TaskFileError(f"{where}: {e}") from None
        spec.source = f"{path.name}:{number}"
        specs.append(spec)
    return specs


def load_task_specs(folder: Path = TASKS_DIR, check_eval=None) -> list[TaskSpec]:
    """Every task of every ``*.jsonl`` file in ``folder`` (file order, then line order); ids must be unique."""
    if not folder.is_dir():
        raise TaskFileError(f"task folder {folder} does not exist; fix env.sandbox.tasks_dir")
    specs: list[TaskSpec] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for spec in read_task_file(path, check_eval):
            if spec.task_id in seen:
                raise TaskFileError(f"task file {path}, line {spec.source.split(':')[-1]}: task_id {spec.task_id!r} "
                                    f"repeats {seen[spec.task_id]}")
            seen[spec.task_id] = spec.source
            specs.append(spec)
    return specs
