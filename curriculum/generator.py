"""In-breadth evolution (WebRL §3.1): new task instructions written from the tasks the agent failed.

For each site, the failed tasks are shown a few at a time (``curriculum.failed_per_prompt``) with some
of the site's seed tasks and entity names, and the model is asked for ``tasks_per_prompt`` new tasks
of the same kind and difficulty that reuse those entities. The model is either our own inference
engine (:class:`EngineChat`, any :class:`actors.engine.Engine`) or any OpenAI-compatible endpoint
(:class:`OpenAIChat`, a plain POST to ``<endpoint_url>/chat/completions``, its key read from the
environment variable ``curriculum.api_key_env`` and never logged or stored).

Answers are parsed by :func:`parse_tasks` (JSON lists or objects, numbered or bulleted lists, plain
lines); what cannot be read is counted, never raised. A new task inherits its parents' suite, start
URL and allowed origins, has no evaluator (the ORM judges it) and the id ``gen/<phase>/<hash>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from curriculum.filters import normalise
from curriculum.task_store import TaskEntry
from webrl.types import Task, TaskOrigin

log = logging.getLogger(__name__)

LIST_ITEM = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*•+]|(?:task|instruction)\s*#?\d{0,3}\s*[:.)-])\s*(.+)$", re.IGNORECASE)
LABEL = re.compile(r"^(?:task|instruction|new task)\s*#?\d{0,3}\s*[:.)-]\s*", re.IGNORECASE)
FENCE = re.compile(r"^\s*```[\w-]*\s*$")
JSON_KEYS = ("instruction", "task", "intent", "description", "text")


class GeneratorError(RuntimeError):
    """No prompt of a generation round could be answered; the message says why."""


# ---- parsing -------------------------------------------------------------------------------------

@dataclass
class ParsedTasks:
    instructions: list[str] = field(default_factory=list)
    unparsable: int = 0  # lines or JSON items that were not a task
    unparsable_examples: list[str] = field(default_factory=list)  # the first few, for the log


def _clean(text: str) -> str:
    """An instruction without list labels, markdown emphasis and surrounding quotes."""
    text = LABEL.sub("", text.strip())
    text = text.replace("**", "").replace("__", "").strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text.rstrip(",").strip()


def _looks_like_text(text: str) -> bool:
    """At least two words of letters, and no control characters."""
    return len(re.findall(r"[^\W\d_]{2,}", text)) >= 2 and not any(unicodedata.category(ch) == "Cc" for ch in text)


def _from_json(text: str) -> tuple[list[Any], bool]:
    """Items of a JSON list (or of a ``{"tasks": [...]}`` object) found in ``text``; (.., False) if none."""
    candidates = [text]
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    for cand in candidates:
        try:
            data = json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            data = next((data[k] for k in ("tasks", "instructions", "new_tasks") if isinstance(data.get(k), list)), None)
        if isinstance(data, list):
            return data, True
    return [], False


def parse_tasks(text: str, keep_examples: int = 5) -> ParsedTasks:
    """New task instructions in a model's answer: a JSON list (of strings, or of objects with an
    ``instruction``/``task``/``intent`` key), a numbered or bulleted list, or else one per line.
    Whatever is not a task is counted in ``unparsable``; nothing raises."""
    out = ParsedTasks()

    def junk(item: Any) -> None:
        out.unparsable += 1
        if len(out.unparsable_examples) < keep_examples:
            out.unparsable_examples.append(str(item)[:120])

    def take(raw: Any) -> None:
        if isinstance(raw, dict):
            raw = next((raw[k] for k in JSON_KEYS if isinstance(raw.get(k), str)), None)
        cleaned = _clean(raw) if isinstance(raw, str) else ""
        (out.instructions.append(cleaned) if _looks_like_text(cleaned) else junk(raw))

    text = text or ""
    items, is_json = _from_json(text)
    if is_json:
        for item in items:
            take(item)
        return out
    lines = [ln for ln in text.splitlines() if ln.strip() and not FENCE.match(ln)]
    listed = [LIST_ITEM.match(ln) for ln in lines]
    as_list = any(listed)
    for line, m in zip(lines, listed):
        if m:
            take(m.group(1))
        elif as_list or line.rstrip().endswith(":") or len(line.split()) < 3:
            junk(line)
        else:
            take(line)
    return out


# ---- prompts -------------------------------------------------------------------------------------

SYSTEM = "You write tasks for a web agent that is learning to use websites. You answer with tasks only."


def build_messages(site: str, failed: Sequence[Task], examples: Sequence[Task], entities: Sequence[str], n: int) -> list[dict]:
    """The chat asking for ``n`` new tasks on ``site`` like the ``failed`` ones."""
    parts = [f"Website: {site}", "", "The agent failed these tasks on this website:"]
    parts += [f"{i}. {t.instruction}" for i, t in enumerate(failed, 1)]
    if examples:
        parts += ["", "Other tasks on this website:"] + [f"- {t.instruction}" for t in examples]
    if entities:
        parts += ["", "Some things that exist on this website: " + "; ".join(entities)]
    parts += ["", f"Write {n} new tasks for the same website: the same kind of tasks as the failed ones, of similar "
              "difficulty, each a single instruction a user could give. Reuse the products, names, numbers and places "
              "that appear above; do not invent new ones. Each task must be doable in a web browser on this website alone.",
              "Answer with a numbered list, one task per line, and nothing else."]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(parts)}]


# ---- chat back-ends ------------------------------------------------------------------------------

class Chat(Protocol):
    name: str

    def complete(self, chats: list[list[dict]]) -> list[str | Exception]:
        """One answer (or the error that stopped it) per chat."""


class EngineChat:
    """Chats through our own inference engine (its tokenizer's chat template); all prompts at once, batched."""

    def __init__(self, engine, cur, model_name: str = "policy"):
        self.engine, self.cur = engine, cur
        self.name = f"engine:{model_name}"

    def complete(self, chats: list[list[dict]]) -> list[str | Exception]:
        from actors.engine import Sampling

        tok = self.engine.tokenizer
        sampling = Sampling(temperature=self.cur.temperature, max_tokens=self.cur.max_new_tokens)
        futures = []
        for messages in chats:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            futures.append(self.engine.submit(tok(text, add_special_tokens=False).input_ids, sampling))
        answers: list[str | Exception] = []
        for fut in futures:
            try:
                answers.append(fut.result().text)
            except Exception as e:  # noqa: BLE001 - one failed prompt is counted, not fatal
                answers.append(e)
        return answers


class OpenAIChat:
    """Chats through an OpenAI-compatible ``/v1/chat/completions`` endpoint, one POST per prompt."""

    def __init__(self, cur):
        if not cur.endpoint_url or not cur.model:
            raise ValueError("curriculum.generator=openai needs curriculum.endpoint_url and curriculum.model")
        self.cur = cur
        self.url = cur.endpoint_url.rstrip("/") + "/chat/completions"
        self.name = f"openai:{cur.model}"

    def _key(self) -> str | None:
        env = self.cur.api_key_env
        if not env:
            return None
        key = os.environ.get(env)
        if not key:
            raise GeneratorError(f"curriculum.api_key_env names ${env}, which is not set: export {env}=<your key> "
                                 "(or set curriculum.api_key_env=null for an endpoint without a key)")
        return key

    def _post(self, messages: list[dict], key: str | None) -> str:
        body = json.dumps({"model": self.cur.model, "messages": messages, "temperature": self.cur.temperature,
                           "max_tokens": self.cur.max_new_tokens}).encode()
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cur.request_timeout_s) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode(errors="replace")
            raise GeneratorError(f"{self.url} answered HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise GeneratorError(f"cannot reach {self.url}: {getattr(e, 'reason', e)}") from None
        except json.JSONDecodeError:
            raise GeneratorError(f"{self.url} answered with something that is not JSON") from None
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise GeneratorError(f"{self.url} answered without choices[0].message.content: {str(data)[:200]}") from None

    def complete(self, chats: list[list[dict]]) -> list[str | Exception]:
        key = self._key()
        answers: list[str | Exception] = []
        for messages in chats:
            try:
                answers.append(self._post(messages, key))
            except GeneratorError as e:
                answers.append(GeneratorError(str(e).replace(key, "***") if key else str(e)))
        return answers


# ---- generation ----------------------------------------------------------------------------------

def task_id(phase: int, site: str, instruction: str) -> str:
    """``gen/<phase>/<hash>``: the same site and (normalised) text give the same id within a phase."""
    digest = hashlib.sha1((site + "\n" + normalise(instruction)).encode()).hexdigest()[:12]
    return f"gen/{phase}/{digest}"


def child_task(instruction: str, parents: Sequence[Task], site: str, phase: int) -> Task:
    """A generated task: the parents' suite, their most common start URL, their allowed origins, no evaluator."""
    start_url = Counter(p.start_url for p in parents).most_common(1)[0][0]
    origins = list(dict.fromkeys(o for p in parents for o in p.allowed_origins))
    return Task(id=task_id(phase, site, instruction), suite=parents[0].suite, instruction=instruction,
                start_url=start_url, evaluator=None, allowed_origins=origins,
                origin=TaskOrigin(kind="generated", parent_ids=[p.id for p in parents], phase=phase))


@dataclass
class GenerationResult:
    entries: list[TaskEntry]
    stats: dict[str, Any]


class TaskGenerator:
    def __init__(self, chat: Chat, cur):
        self.chat, self.cur = chat, cur

    def prompts(self, failed: dict[str, list[Task]], examples: dict[str, list[Task]],
                entities: dict[str, list[str]]) -> list[tuple[str, list[Task], list[dict]]]:
        """(site, parents, chat) for each prompt: the site's failed tasks with an instruction, in groups."""
        out = []
        size = self.cur.failed_per_prompt
        for site, tasks in failed.items():
            usable = [t for t in tasks if t.instruction]
            for start in range(0, min(len(usable), size * self.cur.max_prompts_per_site), size):
                group = usable[start:start + size]
                shown = [t for t in examples.get(site, []) if t.id not in {g.id for g in group}][: self.cur.examples_per_prompt]
                out.append((site, group, build_messages(site, group, shown, entities.get(site, []), self.cur.tasks_per_prompt)))
        return out

    def generate(self, failed: dict[str, list[Task]], phase: int, examples: dict[str, list[Task]] | None = None,
                 entities: dict[str, list[str]] | None = None) -> GenerationResult:
        """New tasks for ``phase`` from ``failed`` (site -> tasks). Raises :class:`GeneratorError` only
        when there were prompts and every one of them failed."""
        prompts = self.prompts(failed, examples or {}, entities or {})
        skipped = sum(1 for tasks in failed.values() for t in tasks if not t.instruction)
        stats: dict[str, Any] = {"prompts": len(prompts), "answered": 0, "errors": [], "parsed": 0, "unparsable": 0,
                                 "skipped_no_instruction": skipped, "sites": {}, "generator": self.chat.name}
        if not prompts:
            return GenerationResult([], stats)
        answers = self.chat.complete([chat for _, _, chat in prompts])
        entries: list[TaskEntry] = []
        for (site, parents, _), answer in zip(prompts, answers):
            site_stats = stats["sites"].setdefault(site, {"prompts": 0, "parsed": 0, "unparsable": 0})
            site_stats["prompts"] += 1
            if isinstance(answer, Exception):
                stats["errors"].append(f"{site}: {answer}")
                continue
            stats["answered"] += 1
            parsed = parse_tasks(answer)
            if parsed.unparsable:
                log.info("generator answer for %s: %d unparsable lines, e.g. %r", site, parsed.unparsable,
                         parsed.unparsable_examples[:2])
            for key, n in (("parsed", len(parsed.instructions)), ("unparsable", parsed.unparsable)):
                stats[key] += n
                site_stats[key] += n
            entries += [TaskEntry(task=child_task(text, parents, site, phase), site=site, generator=self.chat.name)
                        for text in parsed.instructions]
        if stats["answered"] == 0:
            raise GeneratorError(f"all {len(prompts)} generator prompts failed; the first: {stats['errors'][0]}")
        for err in stats["errors"]:
            log.warning("curriculum generator: %s", err)
        return GenerationResult(entries, stats)


def make_generator(cfg, engine=None) -> TaskGenerator:
    """The configured generator (``cfg``: the whole :class:`~webrl.config.WebRLConfig`). For
    ``curriculum.generator=engine``: ``engine`` if given (e.g. a rollout worker's), else a new one for
    ``curriculum.model`` (None: the policy)."""
    cur = cfg.curriculum
    if cur.generator == "openai":
        return TaskGenerator(OpenAIChat(cur), cur)
    model = cur.model or cfg.rollout.model
    if engine is None:
        from actors.engine import make_engine

        engine = make_engine(cfg, cur.model)
    return TaskGenerator(EngineChat(engine, cur, str(model)), cur)
