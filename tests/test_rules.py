"""Rule evaluators (reward/): WebArena's string rules, url_match, the judge, state_check on a real
SQLite database, and program_html on real pages in Chromium served from 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envpool.chromium import find_executable
from envpool.static_server import StaticServer
from reward import text_match as tm
from reward.judge import TokenOverlapJudge, fuzzy_prompt, fuzzy_verdict, load_judge
from reward.rule_config import RuleConfigError, parse_eval_config
from reward.rules import evaluate, rows_text
from reward.url_match import url_match
from webrl.config import BrowserConfig

PAGES = Path(__file__).parent / "data" / "webarena" / "sites"


def run(coro):
    return asyncio.run(coro)


def strings(answer, **refs):
    return run(evaluate({"eval_types": ["string_match"], "reference_answers": refs}, answer=answer))


# ---- normalisation and string rules --------------------------------------------------------------
@pytest.mark.parametrize("raw, norm", [
    ("  Hello World \n", "hello world"),
    ("'Yes'", "yes"),
    ('"N/A"', "n/a"),
    ("'mixed\"", "'mixed\""),          # quotes that do not pair stay
    ("\"'twice'\"", "'twice'"),       # one pair per normalisation
    ("'", "'"),
])
def test_normalize(raw, norm):
    assert tm.normalize(raw) == norm


def test_exact_match():
    assert tm.exact_match("Canceled", "  'canceled' ")
    assert not tm.exact_match("Canceled", "canceled.")
    assert tm.exact_match("yes |OR| true", "True")
    assert not tm.exact_match("yes |OR| true", "no")


def test_must_include_substring_alternatives_and_whole_words():
    assert tm.must_include("Impulse Duffle", "The top one is the IMPULSE DUFFLE bag")
    assert not tm.must_include("Impulse Duffle", "Impulse bag")
    assert tm.must_include("65 |OR| 3", "about 3 of them")
    assert not tm.must_include("65 |OR| 3", "about 4 of them")
    # a one-character reference: whole tokens only when asked (WebArena: a one-item list)
    assert not tm.must_include("0", "10 orders", whole_word=True)
    assert tm.must_include("0", "0 orders", whole_word=True)
    assert tm.must_include("5", "It costs $5.", whole_word=True)
    assert tm.must_include("0", "10 orders")  # substring without whole_word


def test_words_peels_edge_punctuation_and_keeps_inner():
    assert tm.words("($5), 1,000 and 3.5-4!") == ["(", "$", "5", ")", ",", "1,000", "and", "3.5-4", "!"]


def test_string_match_product_of_items():
    r = strings("Impulse Duffle, Overnight Duffle", must_include=["Impulse Duffle", "Overnight Duffle", "Hawkeye"])
    assert r.reward == 0.0
    assert [c.passed for c in r.checks] == [True, True, False]
    assert "FAIL" in r.explain()[2] and "hawkeye" in r.explain()[2].lower()
    assert strings("impulse duffle, overnight duffle, hawkeye", must_include=["Impulse Duffle", "Overnight Duffle",
                                                                              "Hawkeye"]).reward == 1.0


def test_string_match_single_item_is_whole_word_many_items_are_not():
    assert strings("2", must_include=["2"]).reward == 1.0
    assert strings("12", must_include=["2"]).reward == 0.0
    assert strings("There are 2.", must_include=["2"]).reward == 1.0
    assert strings("12", must_include=["1", "2"]).reward == 1.0  # two items: plain substrings


def test_string_match_bare_string_must_include_and_exact():
    assert strings("yjlou", must_include="yjlou").reward == 1.0
    assert strings('"N/A"', exact_match="N/A").reward == 1.0
    assert strings("N/A, no such order", exact_match="N/A").reward == 0.0


def test_string_match_normalises_the_answer_twice_as_webarena_does():
    # WebArena cleans the answer once before the comparison and again inside it
    assert strings("\"'Yes'\"", exact_match="yes").reward == 1.0


def test_no_answer_reads_as_empty():
    assert strings(None, must_include=["x"]).reward == 0.0
    assert strings(None, exact_match="").reward == 1.0


def test_fuzzy_match_calls_the_judge_per_reference():
    seen = []

    async def judge(intent, answer, reference):
        seen.append((intent, answer, reference))
        return reference != "bad"

    cfg = {"eval_types": ["string_match"], "reference_answers": {"fuzzy_match": ["good", "fine"]}}
    r = run(evaluate(cfg, answer="Whatever", judge=judge, intent="Q?"))
    assert r.reward == 1.0 and seen == [("Q?", "whatever", "good"), ("Q?", "whatever", "fine")]
    cfg["reference_answers"]["fuzzy_match"] = ["good", "bad"]
    assert run(evaluate(cfg, answer="x", judge=judge)).reward == 0.0


def test_unachievable_na_and_the_reason():
    cfg = {"eval_types": ["string_match"], "reference_answers": {"fuzzy_match": "N/A"},
           "string_note": "We cannot add order history."}
    assert run(evaluate(cfg, answer="N/A")).reward == 1.0
    # not plain N/A: the default judge compares the answer with the reason
    assert run(evaluate(cfg, answer="N/A: we cannot add order history here")).reward == 1.0
    assert run(evaluate(cfg, answer="Done, I added it")).reward == 0.0
    no_note = {"eval_types": ["string_match"], "reference_answers": {"fuzzy_match": "N/A"}}
    r = run(evaluate(no_note, answer="cannot be done"))
    assert r.reward == 0.0 and "gives no reason" in r.checks[0].detail


# ---- the default judge and judge plumbing --------------------------------------------------------
def test_token_overlap_judge():
    judge = TokenOverlapJudge()
    assert run(judge("", "It takes 1.4 km", "1.4km"))
    assert run(judge("", "Walking 3h 20min", "3h 20min"))
    assert not run(judge("", "Walking 3h 25min", "3h 20min"))  # a number differs
    assert run(judge("", "the order was canceled, it will never arrive", "The last order was canceled. It will never arrive."))
    assert not run(judge("", "Yes it is open", "No, it is open"))
    assert not run(judge("", "anything", ""))
    assert TokenOverlapJudge(threshold=0.5).score("b c", "a b c d") == 0.5
    with pytest.raises(ValueError, match="threshold"):
        TokenOverlapJudge(threshold=0)


def test_load_judge_and_llm_helpers():
    assert isinstance(load_judge(None), TokenOverlapJudge)
    assert isinstance(load_judge("reward.judge:TokenOverlapJudge"), TokenOverlapJudge)
    with pytest.raises(ValueError, match="package.module:callable"):
        load_judge("nocolon")
    with pytest.raises(ValueError, match="cannot load"):
        load_judge("reward.judge:nothing_here")
    messages = fuzzy_prompt("How long?", "10 min", "11 min")
    assert "How long?" in messages[-1]["content"] and "11 min" in messages[-1]["content"]
    assert fuzzy_verdict("... so the answer is correct.")
    assert not fuzzy_verdict("Incorrect.") and not fuzzy_verdict("partially correct")
    with pytest.raises(ValueError, match="no verdict"):
        fuzzy_verdict("hmm")


# ---- url_match ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ref, page, ok", [
    ("http://h:1/f/books", "http://h:1/f/books/12/a-post", True),          # the reference's base inside the page's
    ("http://h:1/f/books/", "http://h:1/f/books", True),                   # trailing slashes
    ("http://h:1/f/books", "http://h:1/f/movies", False),
    ("http://h:1/f/machinelearning |OR| http://h:1/f/technology", "http://h:1/f/technology/9", True),
    ("http://h:1/s?q=chairs&order=price", "http://h:1/s?order=price&q=chairs&page=2", True),  # extra params ignored
    ("http://h:1/s?q=chairs&order=price", "http://h:1/s?q=chairs", False),  # a wanted param missing
    ("http://h:1/s?q=chairs", "http://h:1/s?q=tables", False),
    ("http://h:1/search?query=hotels%20near%20x", "http://h:1/search?query=hotels+near+x", True),  # decoded
    ("http://h:1/s?a=1 |OR| http://h:1/s?a=2", "http://h:1/s?a=2", True),    # pooled parameter values
    ("http://h:1/catalog/result/?q=x", "http://h:1/catalog/result?q=x", False),  # WebArena keeps that slash
])
def test_url_match(ref, page, ok):
    assert url_match(ref, page)[0] is ok


# ---- state_check on a real SQLite database -------------------------------------------------------
def _sqlite_state():
    db = sqlite3.connect(":memory:")
    db.executescript("CREATE TABLE orders (id INTEGER, status TEXT, note TEXT);"
                     "INSERT INTO orders VALUES (190, 'canceled', NULL), (189, 'pending', 'gift');")
    sites = {"shop": db}

    async def state(site, sql):
        return [list(row) for row in sites[site].execute(sql).fetchall()]

    return state


def test_state_check():
    state = _sqlite_state()
    cfg = {"eval_types": ["state_check"], "state_check": [
        {"site": "shop", "sql": "SELECT status FROM orders WHERE id = 190", "required_contents": {"exact_match": "Canceled"}},
        {"site": "shop", "sql": "SELECT id, note FROM orders ORDER BY id", "required_contents": {"must_include": ["189\tgift"]}},
    ]}
    r = run(evaluate(cfg, answer=None, state=state))
    assert r.reward == 1.0, r.explain()
    cfg["state_check"][0]["required_contents"] = {"exact_match": "pending"}
    assert run(evaluate(cfg, answer=None, state=state)).reward == 0.0
    assert rows_text([[1, None, "a"], [2.5, "b", ""]]) == "1\t\ta\n2.5\tb\t"


def test_state_check_errors_name_the_task():
    cfg = {"eval_types": ["state_check"], "state_check": [
        {"site": "shop", "sql": "SELECT nope FROM orders", "required_contents": {"exact_match": "x"}}]}
    with pytest.raises(RuleConfigError, match=r"task sandbox/t1: state_check 0 on site 'shop' failed: no such column"):
        run(evaluate(cfg, answer=None, state=_sqlite_state(), task_id="sandbox/t1"))
    with pytest.raises(RuleConfigError, match="state_check needs the site state"):
        run(evaluate(cfg, answer=None, task_id="sandbox/t1"))


# ---- config errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("config, message", [
    ({"eval_types": ["string_match", "dom_match"], "reference_answers": {"exact_match": "x"}}, "unknown eval type 'dom_match'"),
    ({"eval_types": []}, "eval_types"),
    ({"eval_types": ["string_match"]}, "string_match needs reference_answers"),
    ({"eval_types": ["string_match"], "reference_answers": {"contains": "x"}}, "reference_answers.contains"),
    ({"eval_types": ["string_match"], "reference_answers": {"fuzzy_match": "maybe"}}, "fuzzy_match"),
    ({"eval_types": ["url_match"], "reference_url": ""}, "url_match needs a reference_url"),
    ({"eval_types": ["url_match"], "reference_url": "http://x", "url_note": "EXACT"}, "unknown url_note"),
    ({"eval_types": ["program_html"], "program_html": []}, "has no program_html entries"),
    ({"eval_types": ["program_html"], "program_html": [{"url": "last", "locator": "$('x')",
                                                        "required_contents": {"exact_match": "x"}}]}, "unknown locator"),
    ({"eval_types": ["program_html"], "program_html": [{"url": "func:nope()", "locator": "",
                                                        "required_contents": {"exact_match": "x"}}]}, "unknown helper 'nope'"),
    ({"eval_types": ["program_html"], "program_html": [{"url": "func:shopping_get_sku_latest_review_rating('B0')",
                                                        "locator": "", "required_contents": {"exact_match": "x"}}]},
     "is not supported"),
    ({"eval_types": ["program_html"], "program_html": [{"url": "last", "locator": "",
                                                        "required_contents": {"exact_match": "x", "must_include": ["y"]}}]},
     "exactly one of"),
    ("string_match", "must be a JSON object"),
])
def test_malformed_configs_raise_naming_the_task(config, message):
    with pytest.raises(RuleConfigError, match="task webarena/7") as err:
        parse_eval_config(config, "webarena/7")
    assert message in str(err.value)


def test_page_evaluators_need_a_page():
    with pytest.raises(RuleConfigError, match="url_match need the agent's final page"):
        run(evaluate({"eval_types": ["url_match"], "reference_url": "http://x/"}, answer=None, task_id="t"))


# ---- url_match and program_html on real pages in Chromium --------------------------------------
@pytest.fixture
def site(tmp_path):
    """The recorded sites, each served from its own root on 127.0.0.1 (its own origin), plus a
    ``plain`` one; yields site name -> base URL."""
    root = tmp_path / "sites"
    shutil.copytree(PAGES, root)
    (root / "plain").mkdir()
    (root / "plain" / "index.html").write_text(
        "<!doctype html><title>p</title><p id='a'>Fish &amp; Chips</p><p hidden>tucked away</p>"
        "<script>document.title = 'cookie=' + document.cookie</script>")
    servers = {folder.name: StaticServer(folder) for folder in root.iterdir()}
    yield {name: server.url.rstrip("/") for name, server in servers.items()}
    with ThreadPoolExecutor() as closing:  # each close waits out its server's poll interval
        list(closing.map(StaticServer.close, servers.values()))


@pytest.fixture(scope="module")
def browser():
    """One Chromium for this module's browser tests, on an event loop in a thread of its own;
    yields ``on_page(url, body)``: run ``body(page)`` on a fresh context's page at ``url``."""
    from playwright.async_api import async_playwright

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    pw = call(async_playwright().start())
    chromium = call(pw.chromium.launch(executable_path=find_executable(BrowserConfig()), args=["--no-sandbox"]))

    async def with_page(url, body):
        context = await chromium.new_context()
        await context.add_cookies([{"name": "session", "value": "s3", "domain": "127.0.0.1", "path": "/"}])
        page = await context.new_page()
        await page.goto(url)
        try:
            return await body(page)
        finally:
            await context.close()

    yield lambda url, body: call(with_page(url, body))
    call(chromium.close())
    call(pw.stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def html_target(url, locator, **required):
    return {"url": url, "locator": locator, "required_contents": required}


@pytest.mark.browser
def test_url_match_and_program_html_on_the_agents_page(site, browser):
    async def body(page):
        ok = await evaluate({"eval_types": ["url_match", "program_html"], "reference_url": site["map"],
                             "program_html": [
                                 html_target("last", "document.querySelector('[name=\"route_from\"]').value",
                                             must_include=["Carnegie Mellon University", "Pittsburgh"]),
                                 html_target("last", 'document.querySelector("div#content select.routing_engines").selectedIndex',
                                             exact_match="1"),
                                 html_target("last", "document.querySelector('#nothing').outerText", exact_match=""),
                             ]}, answer=None, page=page, settle_s=0)
        bad = await evaluate({"eval_types": ["url_match"], "reference_url": site["reddit"]}, answer=None, page=page)
        return ok, bad

    ok, bad = browser(f"{site['map']}/directions/", body)
    assert ok.reward == 1.0, ok.explain()
    assert bad.reward == 0.0 and "is not under" in bad.checks[0].detail


@pytest.mark.browser
def test_program_html_opens_urls_in_the_agents_context_and_reads_html(site, browser):
    async def body(page):
        result = await evaluate({"eval_types": ["program_html"], "program_html": [
            # the page's HTML, entities decoded: hidden text counts, as in WebArena's page.content()
            html_target(f"{site['plain']}/", "", must_include=["Fish & Chips", "tucked away"]),
            # a new page of the same context carries the context's cookies
            html_target(f"{site['plain']}/", "document.title", exact_match="cookie=session=s3"),
            # a URL relative to the agent's page
            html_target("/directions/", "document.querySelector('[name=\"route_to\"]').value", must_include=["TD Garden"]),
            html_target(f"{site['shopping_admin']}/catalog/product/edit/id/1481/",
                        "document.querySelector('[name=\"product[price]\"').value", exact_match="27.00"),
            html_target(f"{site['plain']}/", "document.querySelector('#a').outerText", fuzzy_match=["fish", "chips"]),
        ]}, answer=None, page=page, settle_s=0)
        return result, page.url, len(page.context.pages)

    result, url_after, pages = browser(f"{site['map']}/", body)
    assert result.reward == 1.0, result.explain()
    assert url_after == f"{site['map']}/" and pages == 1  # the agent's page untouched, opened pages closed


@pytest.mark.browser
def test_program_html_failures_fail_the_check_with_a_reason(site, browser):
    async def body(page):
        return await evaluate({"eval_types": ["program_html"], "program_html": [
            html_target("last", "document.querySelector('#missing').outerText", must_include=["x"]),  # throws -> ""
            html_target("http://127.0.0.1:9/nothing-listens", "", must_include=["x"]),
            html_target(f"{site['plain']}/", "document.querySelector('#a').outerText", exact_match="Fish"),
        ]}, answer=None, page=page, settle_s=0, timeout_s=5)

    r = browser(f"{site['map']}/", body)
    assert r.reward == 0.0 and [c.passed for c in r.checks] == [False, False, False]
    assert "could not open http://127.0.0.1:9/nothing-listens" in r.checks[1].detail
    assert "'Fish & Chips'" in r.checks[2].detail


@pytest.mark.browser
def test_program_html_prep_actions_run_before_the_locator(site, browser):
    async def body(page):
        return await evaluate({"eval_types": ["program_html"], "program_html": [
            {**html_target("last", "document.body.dataset.flag", exact_match="set"),
             "prep_actions": ["document.body.dataset.flag = 'set'", "throw new Error('ignored')"]}]},
            answer=None, page=page)

    assert browser(f"{site['map']}/", body).reward == 1.0


@pytest.mark.browser
def test_webarena_helpers_on_recorded_pages(site, browser):
    sites = {"shopping": site["shopping"]}

    async def body(page):
        post = await evaluate({"eval_types": ["program_html"], "program_html": [
            html_target("func:reddit_get_post_url('__last_url__')", "document.querySelector('.submission__inner').outerText",
                        must_include=["is car necessary in NYC", "wondering about a car"])]}, answer=None, page=page, settle_s=0)
        order = await evaluate({"eval_types": ["program_html"], "program_html": [
            html_target("func:shopping_get_latest_order_url()", 'document.querySelector(".order-details-items.ordered").outerText',
                        must_include=["B0738JQG6Q"])]}, answer=None, page=page, sites=sites, settle_s=0)
        no_shop = await evaluate({"eval_types": ["program_html"], "program_html": [
            html_target("func:shopping_get_latest_order_url()", "", must_include=["B0738JQG6Q"])]},
            answer=None, page=page, settle_s=0)
        await page.goto(f"{site['gitlab']}/byteblaze/dotfiles/-/project_members/")
        roles = [await evaluate({"eval_types": ["program_html"], "program_html": [
            html_target("last", f"func:gitlab_get_project_memeber_role(__page__, '{who}')", **want)]}, answer=None, page=page)
            for who, want in [("vinta", {"must_include": ["Guest"]}), ("byteblaze", {"exact_match": "Owner"}),
                              ("vinta", {"must_include": ["Maintainer"]}), ("nobody", {"exact_match": ""})]]
        return post, order, no_shop, roles

    post, order, no_shop, roles = browser(f"{site['reddit']}/f/nyc/130001/is-car-necessary-in-nyc/", body)
    assert post.reward == 1.0, post.explain()
    assert f"{site['reddit']}/f/nyc/130001/ document" in post.checks[0].detail  # the post's own URL
    assert order.reward == 1.0, order.explain()
    assert "order_id/190" in order.checks[0].detail
    assert no_shop.reward == 0.0 and "env.webarena.urls.shopping" in no_shop.checks[0].detail
    assert [r.reward for r in roles] == [1.0, 1.0, 0.0, 1.0]


def test_reddit_post_url():
    from reward.page_checks import reddit_post_url

    assert reddit_post_url("http://h:9/f/books/124/adults-reading/comment/5") == "http://h:9/f/books/124/"
    assert reddit_post_url("http://h:9/f/books") == "http://h:9/f/books"
    assert reddit_post_url("http://h:9/user/x/y") == "http://h:9/user/x/y"
