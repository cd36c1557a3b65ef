"""web/app.js driven in chromium against a real `tensorsharp serve` on SmolLM2: streaming, stats,
stop, KV reuse across turns and reloads, session recovery, edit-and-resend, errors, settings and
the layout at phone and desktop widths."""
from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

# The KV figure ("KV reused 30/50 ... (60%)") is there only when something was reused.
STATS = re.compile(r"(\d+) tokens · ([\d.]+) s · ([\d.]+) tok/s · (?:KV reused (\d+)/)?(\d+) prompt tokens(?: \((\d+)%\))?")
ANSWER_TIMEOUT_MS = 60_000

# Records every change of the newest answer (text length, stats line) as the page paints it.
WATCH = """() => {
  window.__frames = [];
  const log = document.getElementById("messages");
  new MutationObserver(() => {
    const turn = [...log.querySelectorAll(".turn.assistant")].pop();
    if (turn) window.__frames.push([turn.querySelector(".answer").textContent.length,
                                    turn.querySelector(".stats").textContent]);
  }).observe(log, { subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture
def open_page(browser, server):
    """open_page(width=..., settings=..., mobile=...) -> a page on the server; settings seed localStorage."""
    contexts, errors = [], []

    def _open(width=1280, height=860, settings=None, color_scheme="light", mobile=False):
        # mobile: a phone's touch screen and overlay scrollbars, drawn only while scrolling.
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme,
                                      is_mobile=mobile, has_touch=mobile)
        contexts.append(context)
        seed = {"maxTokens": 16, "temperature": 0} if settings is None else settings
        context.add_init_script(
            f"if (!localStorage.getItem('tensorsharp.settings')) localStorage.setItem('tensorsharp.settings', {json.dumps(json.dumps(seed))});")
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and "/api/" not in r.url else None)
        page.goto(server + "/")
        page.wait_for_selector("#status-dot.ok")
        return page

    yield _open
    for context in contexts:
        context.close()
    assert errors == [], "the page threw or one of its files failed to load"


def send(page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def answer_stats(page, n: int) -> dict:
    """Waits for the n-th assistant turn (0-based) to finish; returns its parsed stats line."""
    stats = page.locator(".turn.assistant").nth(n).locator(".stats")
    stats.filter(has_text="tok/s").wait_for(timeout=ANSWER_TIMEOUT_MS)
    m = STATS.search(stats.inner_text())
    assert m, stats.inner_text()
    keys = ("tokens", "seconds", "tok_per_sec", "kv_reused", "prompt_tokens", "percent")
    return dict(zip(keys, (float(g or 0) for g in m.groups())))


def canned_chat(page, *answers: list) -> None:
    """Answers the page's next chat requests, in turn, with these lists of SSE frames."""
    bodies = ["".join(f"data: {json.dumps(f)}\n\n" for f in frames) for frames in answers]
    page.route("**/api/chat", lambda route: route.fulfill(
        status=200, content_type="text/event-stream", body=bodies.pop(0)))


def done_frame(kv_reused=10, prompt_tokens=40, finish="stop") -> dict:
    return {"done": True, "tokenCount": 9, "elapsed": 0.5, "tokPerSec": 18.0, "promptTokens": prompt_tokens,
            "kvReusedTokens": kv_reused, "kvReusePercent": round(100 * kv_reused / prompt_tokens, 1),
            "finishReason": finish}


def session_id(page) -> str | None:
    return page.evaluate("sessionStorage.getItem('tensorsharp.session')")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def loaded_model(server) -> dict:
    data = get_json(server + "/api/models")
    return next(m for m in data["models"] if m["name"] == data["loaded"])


def model_box(page):
    """Where the page names its model: the label, or the picker when the server has several."""
    picker = page.locator("#model-select")
    return (picker if picker.is_visible() else page.locator("#model-label")).bounding_box()


def test_model_name_and_context_come_from_the_server(open_page, server):
    page = open_page()
    model = loaded_model(server)
    assert page.evaluate("document.getElementById('model-label').textContent") == model["name"]
    if len(get_json(server + "/api/tags")["models"]) > 1:
        assert page.locator("#model-select").input_value() == model["name"]
    assert page.inner_text("#model-ctx") == f"{model['contextLength']:,} ctx"
    assert page.locator("#attach").is_hidden()   # SmolLM2 takes no images


def test_shift_enter_adds_a_line_and_enter_sends(open_page):
    page = open_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url) if r.url.endswith("/api/chat") else None)
    page.fill("#input", "first line")
    page.press("#input", "Shift+Enter")
    page.type("#input", "second line")
    assert page.input_value("#input") == "first line\nsecond line"
    assert requests == []
    with page.expect_request("**/api/chat"):
        page.press("#input", "Enter")
    assert page.input_value("#input") == ""
    assert page.locator(".turn.user .text").inner_text() == "first line\nsecond line"
    answer_stats(page, 0)


def test_code_copy_button_copies_the_code(open_page, server):
    page = open_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page.evaluate("""() => {
      const box = document.createElement("div");
      box.append(window.tsMarkdown.render("```sh\\necho '<b>' && ls\\n```"));
      document.getElementById("messages").append(box);
    }""")
    page.click(".codeblock .copy")
    page.locator(".codeblock .copy", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == "echo '<b>' && ls"


def test_thinking_tool_calls_and_queue_frames_render(open_page):
    # SmolLM2 neither thinks nor calls tools, so these frames come from a canned stream.
    frames = [{"sessionId": "canned"}, {"queuePosition": 1}, {"thinking": "Weather needs a tool. "},
              {"thinking": "Call it."}, {"token": "Checking **now**."},
              {"tool_calls": [{"id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
              done_frame(kv_reused=10, prompt_tokens=40)]
    page = open_page()
    canned_chat(page, frames)
    send(page, "Weather in Paris?")
    assert answer_stats(page, 0)["kv_reused"] == 10
    turn = page.locator(".turn.assistant")
    assert turn.locator("details.thinking .thinking-text").text_content() == "Weather needs a tool. Call it."
    assert turn.locator("details.thinking").get_attribute("open") is None   # folded once answered
    assert turn.locator(".answer strong").inner_text() == "now"
    assert turn.locator(".tool-card .tool-name").inner_text() == "get_weather"
    assert json.loads(turn.locator(".tool-card .tool-args").inner_text()) == {"city": "Paris"}
    assert turn.locator(".queue").is_hidden()
    assert session_id(page) == "canned"


# A 1x1 PNG, enough for an upload and a thumbnail.
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                      "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d6d2e3"
                      "0000000049454e44ae426082")


def test_images_upload_and_go_with_the_message_when_the_model_takes_them(open_page):
    page = open_page()

    def claim_images(route):   # SmolLM2 takes no images: pretend it does, to reach the control
        data = route.fetch().json()
        next(m for m in data["models"] if m["name"] == data["loaded"])["supportsImages"] = True
        route.fulfill(json=data)

    page.route("**/api/models", claim_images)
    page.reload()
    page.wait_for_selector("#status-dot.ok")
    assert page.locator("#attach").is_visible()
    with page.expect_response("**/api/upload") as upload:
        page.set_input_files("#file-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PIXEL}])
    uploaded = upload.value.json()
    assert uploaded["name"] == "dot.png" and uploaded["id"]
    page.locator(".attachment:not(.uploading) img").wait_for()
    with page.expect_request("**/api/chat") as req:
        send(page, "What is in this picture?")
    assert req.value.post_data_json["messages"][-1]["images"] == [uploaded["id"]]
    assert page.locator(".turn.user img.thumb").is_visible()
    assert page.locator("#attachments").is_hidden()
    # Whatever the text-only model makes of it, the turn ends with an answer or a stated error.
    page.locator(".turn.assistant .stats:has-text('tok/s'), .turn.assistant .turn-error:visible").first.wait_for(
        timeout=ANSWER_TIMEOUT_MS)


def test_answer_streams_token_by_token_then_shows_stats(open_page):
    page = open_page()
    page.evaluate(WATCH)
    send(page, "What is the capital of France?")
    stats = answer_stats(page, 0)
    answer = page.locator(".turn.assistant .answer").inner_text()
    assert answer.strip()
    assert stats["tokens"] >= 1 and stats["prompt_tokens"] > 0 and stats["tok_per_sec"] > 0
    frames = page.evaluate("window.__frames")
    partial = sorted({n for n, s in frames if n > 0 and s == ""})
    # Text was on screen before the stats line, growing over several paints.
    assert len(partial) >= 2, frames
    assert page.locator("#send").is_visible() and page.locator("#stop").is_hidden()


def test_second_turn_reuses_the_kv_cache(open_page):
    page = open_page()
    send(page, "Name a colour.")
    first = answer_stats(page, 0)
    send(page, "Name another one.")
    second = answer_stats(page, 1)
    assert second["kv_reused"] > 0
    assert second["prompt_tokens"] > first["prompt_tokens"]
    sid = session_id(page)
    page.click("#new-chat")
    assert page.locator(".turn").count() == 0 and page.locator("#empty").is_visible()
    with page.expect_request("**/api/chat") as req:
        send(page, "Name a number.")
    body = req.value.post_data_json
    assert body["newChat"] is True and body["sessionId"] == sid and len(body["messages"]) == 1
    answer_stats(page, 0)


def test_stop_mid_answer_frees_the_engine_and_the_next_message_is_answered(open_page, server):
    page = open_page(settings={"maxTokens": 400, "temperature": 0})
    send(page, "Write a long story about a brave knight and a dragon.")
    page.locator(".turn.assistant .answer").filter(has_text=re.compile(r"\S")).wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.click("#stop")
    first = page.locator(".turn.assistant").nth(0)
    first.locator(".stats", has_text="Stopped").wait_for()
    assert page.locator("#send").is_visible()
    deadline = time.monotonic() + 10
    while get_json(server + "/api/queue/status")["active"] != 0:
        assert time.monotonic() < deadline, "the server still generates for the stopped request"
        time.sleep(0.1)
    page.click("#open-settings")
    page.fill("#set-maxTokens", "12")
    page.click("#close-settings")
    send(page, "Now say hello.")
    answer_stats(page, 1)
    assert page.locator(".turn.assistant").nth(1).locator(".answer").inner_text().strip()


def test_reload_keeps_the_session_and_its_cache(open_page):
    page = open_page()
    send(page, "Tell me a fact about cats.")
    answer_stats(page, 0)
    sid = session_id(page)
    assert sid
    page.reload()
    page.wait_for_selector("#status-dot.ok")
    assert page.locator(".turn").count() == 2   # the transcript came back with the tab
    send(page, "Another fact, please.")
    stats = answer_stats(page, 1)
    assert session_id(page) == sid
    assert stats["kv_reused"] > 0


def test_a_forgotten_session_is_recreated(open_page):
    page = open_page()
    page.evaluate("sessionStorage.setItem('tensorsharp.session', 'no-such-session')")
    send(page, "Hello!")
    answer_stats(page, 0)
    sid = session_id(page)
    assert sid and sid != "no-such-session"


def test_edit_and_resend_the_last_user_turn(open_page):
    page = open_page()
    send(page, "Name a fruit.")
    answer_stats(page, 0)
    page.locator(".turn.user.editable .edit").click()
    page.fill(".edit-box", "Name a vegetable.")
    page.press(".edit-box", "Enter")
    answer_stats(page, 0)
    assert page.locator(".turn").count() == 2
    assert page.locator(".turn.user .text").inner_text() == "Name a vegetable."


def test_server_errors_are_shown_in_the_conversation(open_page):
    page = open_page()
    send(page, "word " * 3000)   # longer than the 2048-token context
    error = page.locator(".turn.assistant .turn-error")
    error.wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert "HTTP 400" in error.inner_text() and "context" in error.inner_text()   # the server's own words
    assert page.locator(".turn.user.rejected .turn-note").is_visible()
    # The refused message is not sent again with the next one, which is answered.
    with page.expect_request("**/api/chat") as req:
        send(page, "Say hello.")
    assert req.value.post_data_json["messages"] == [{"role": "user", "content": "Say hello."}]
    answer_stats(page, 1)


def test_unreachable_server_is_reported_and_retry_recovers(open_page):
    page = open_page()
    page.clock.install()   # the page's own reconnection checks wait: only Retry may bring it back
    page.route("**/api/models", lambda route: route.abort())
    page.reload()
    page.locator("#banner").wait_for()
    assert "Cannot reach the tensorsharp server" in page.inner_text("#banner-text")
    assert "down" in page.get_attribute("#status-dot", "class")
    page.unroute("**/api/models")
    page.click("#banner-retry")
    page.wait_for_selector("#status-dot.ok")
    assert page.locator("#banner").is_hidden()


def test_settings_persist_and_go_with_each_request(open_page):
    page = open_page()
    page.click("#open-settings")
    page.fill("#set-temperature", "0.5")
    page.fill("#set-topK", "20")
    page.fill("#set-maxTokens", "8")
    page.fill("#set-systemPrompt", "Answer in one word.")
    page.click("#close-settings")
    page.reload()
    page.wait_for_selector("#status-dot.ok")
    assert page.input_value("#set-temperature") == "0.5"
    assert page.input_value("#set-systemPrompt") == "Answer in one word."
    with page.expect_request("**/api/chat") as req:
        send(page, "Hi")
    body = req.value.post_data_json
    assert (body["temperature"], body["topK"], body["maxTokens"]) == (0.5, 20, 8)
    assert body["systemPrompt"] == "Answer in one word." and body["think"] is False
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert answer_stats(page, 0)["tokens"] <= 8


def test_api_key_from_settings_is_sent_with_api_calls(open_page):
    page = open_page()
    page.click("#open-settings")
    with page.expect_request("**/api/models") as req:
        page.fill("#set-apiKey", "s3cret")
        page.press("#set-apiKey", "Tab")   # the change reloads the model info with the key
    assert req.value.headers.get("authorization") == "Bearer s3cret"
    page.click("#close-settings")
    with page.expect_request("**/api/chat") as req:
        send(page, "Hi")
    assert req.value.headers.get("authorization") == "Bearer s3cret"
    assert "apiKey" not in req.value.post_data_json
    answer_stats(page, 0)


@pytest.mark.parametrize("width,height,scheme", [(390, 844, "dark"), (1280, 800, "light")])
def test_layout_fits_the_width(open_page, screenshot_dir, width, height, scheme):
    page = open_page(width=width, height=height, color_scheme=scheme,
                     settings={"maxTokens": 40, "temperature": 0})
    send(page, "Show a short Python function that adds two numbers, in a code block.")
    answer_stats(page, 0)
    page.screenshot(path=screenshot_dir / f"chat-{width}.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for sel in ("#input", "#send", "#open-settings", "#new-chat"):
        box = page.locator(sel).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, sel
    label, buttons = model_box(page), page.locator("#new-chat").bounding_box()
    assert label["x"] + label["width"] <= buttons["x"], "the model name runs under the buttons"
    page.click("#open-settings")
    page.locator("#settings.open").wait_for()
    page.wait_for_timeout(300)   # the drawer slides in
    page.screenshot(path=screenshot_dir / f"settings-{width}.png")
    drawer = page.locator("#settings").bounding_box()
    assert drawer["x"] >= 0 and drawer["x"] + drawer["width"] <= width + 0.5


def test_a_vision_model_answers_an_uploaded_image_and_reuses_it_next_turn(browser, vision_server):
    context = browser.new_context()
    context.add_init_script("localStorage.setItem('tensorsharp.settings', "
                            + json.dumps(json.dumps({"maxTokens": 4, "temperature": 0})) + ");")
    try:
        page = context.new_page()
        page.goto(vision_server + "/")
        page.wait_for_selector("#status-dot.ok")
        assert page.locator("#attach").is_visible()   # the server says the model takes images
        send(page, "What is in this picture?")
        text_only = answer_stats(page, 0)["prompt_tokens"]
        page.click("#new-chat")
        with page.expect_response("**/api/upload"):
            page.set_input_files("#file-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PIXEL}])
        page.locator(".attachment:not(.uploading) img").wait_for()
        send(page, "What is in this picture?")
        first = answer_stats(page, 0)
        assert page.locator(".turn.user img.thumb").is_visible()
        # The tiny projector's 16 image positions and, in the tiny byte-level vocabulary, six tokens
        # of "\n\n<start_of_image>" and "<end_of_image>\n\n" around them.
        assert first["prompt_tokens"] == text_only + 16 + 6
        send(page, "Are you sure?")
        second = answer_stats(page, 1)
        assert second["kv_reused"] >= first["prompt_tokens"]
    finally:
        context.close()


# ---------- what the reader sees once an answer is done (issue 17, item 6) ----------
# Canned answers arrive in one piece, as a short answer from a quick server does: whatever the
# page does after its last paint decides what is on screen.

LONG_ANSWER = "\n\n".join(f"Paragraph {i}: one more line, so the answer is taller than the window." for i in range(30))


def test_the_log_scrolls_to_its_real_end_after_an_answer(open_page):
    page = open_page(height=600)
    canned_chat(page, [{"token": LONG_ANSWER}, done_frame()], [{"token": LONG_ANSWER}, done_frame(finish="length")])
    for n, text in enumerate(["A long answer, please.", "And another."]):
        send(page, text)
        answer_stats(page, n)
        log = page.locator("#log").evaluate("l => ({ height: l.scrollHeight, view: l.clientHeight, "
                                            "gap: l.scrollHeight - l.scrollTop - l.clientHeight })")
        assert log["height"] > log["view"] + 200, log   # the log does scroll
        assert log["gap"] <= 1, f"answer {n}: the log stops {log['gap']} px short of its end"


def test_the_last_answers_stats_and_copy_button_show_above_the_message_box_on_a_phone(open_page):
    page = open_page(width=390, height=664, mobile=True)
    canned_chat(page, [{"token": LONG_ANSWER}, done_frame(finish="length")])
    send(page, "A long answer, please.")
    answer_stats(page, 0)
    foot = page.locator(".turn.assistant .turn-foot").bounding_box()
    log, composer = page.locator("#log").bounding_box(), page.locator("#composer").bounding_box()
    assert log["y"] <= foot["y"] and foot["y"] + foot["height"] <= composer["y"], (foot, composer)
    for part in (".stats", ".copy-answer"):
        box = page.locator(".turn.assistant " + part).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, part
        # Nothing lies over it: what a tap at its centre reaches is the element itself.
        assert page.locator(".turn.assistant " + part).evaluate(
            "el => { const r = el.getBoundingClientRect();"
            " return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === el; }"), part


def test_long_code_lines_scroll_sideways_with_a_visible_scrollbar_on_a_phone(open_page):
    page = open_page(width=390, height=664, mobile=True)
    line = "values = [" + ", ".join(str(i) for i in range(80)) + "]"
    canned_chat(page, [{"token": f"Here:\n\n```python\n{line}\nprint(sum(values))\n```\n"}, done_frame()])
    send(page, "A long line of code, please.")
    answer_stats(page, 0)
    pre = page.locator(".turn.assistant .codeblock pre")
    m = pre.evaluate("p => ({ scroll: p.scrollWidth, client: p.clientWidth, right: p.getBoundingClientRect().right,"
                     " bar: p.offsetHeight - p.clientHeight })")
    assert m["scroll"] > m["client"] + 100 and m["right"] <= 390, m   # the line is wider than its box
    assert m["bar"] >= 4, "the code box scrolls sideways with no scrollbar drawn: the line just looks cut off"
    pre.evaluate("p => { p.scrollLeft = p.scrollWidth; }")
    assert pre.evaluate("p => p.scrollLeft") == m["scroll"] - m["client"]   # and the end of the line is reachable


def test_the_status_dot_turns_red_with_the_banner_and_green_when_the_server_is_back(open_page):
    page = open_page()
    page.clock.install()   # the page's reconnection checks run when the test moves the clock
    dot = page.locator("#status-dot")
    assert dot.get_attribute("title") == "Connected"
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    send(page, "Are you there?")
    page.locator("#banner").wait_for()
    assert "Cannot reach the tensorsharp server" in page.inner_text("#banner-text")
    assert "down" in dot.get_attribute("class") and dot.get_attribute("title") == "Disconnected"
    # Red is the banner's colour, not just any class name.
    assert dot.evaluate("d => getComputedStyle(d).backgroundColor") == \
        page.locator("#banner").evaluate("b => getComputedStyle(b).color")
    page.clock.run_for(10_000)   # checks while the server is still down change nothing
    assert "down" in dot.get_attribute("class") and page.locator("#banner").is_visible()
    page.unroute("**/api/**")
    page.clock.run_for(10_000)   # no click: the page notices by itself that the server is back
    page.wait_for_selector("#status-dot.ok")
    assert dot.get_attribute("title") == "Connected" and page.locator("#banner").is_hidden()


def test_the_empty_page_names_the_model_by_its_display_name(open_page, server):
    assert get_json(server + "/api/models")["loaded"] == "smollm2-135m:latest"
    page = open_page()
    assert page.inner_text("#empty .empty-title") == "Ask smollm2-135m anything."
    def renamed(listed):
        def handler(route):
            data = route.fetch().json()
            next(m for m in data["models"] if m["name"] == data["loaded"])["name"] = data["loaded"] = listed
            route.fulfill(json=data)
        return handler

    for listed, shown in [("my-model:latest", "my-model"), ("smollm2:135m", "smollm2:135m")]:
        page.route("**/api/models", renamed(listed))
        page.reload()
        page.wait_for_selector("#status-dot.ok")
        assert page.inner_text("#empty .empty-title") == f"Ask {shown} anything."   # only Ollama's default tag goes
        page.unroute("**/api/models")


def test_the_kv_figure_shows_only_when_something_was_reused(open_page):
    page = open_page()
    canned_chat(page, [{"token": "Hello."}, done_frame(kv_reused=0, prompt_tokens=31)],
                [{"token": "Hello again."}, done_frame(kv_reused=40, prompt_tokens=50)])
    send(page, "Hi")
    answer_stats(page, 0)
    send(page, "Hi again")
    answer_stats(page, 1)
    first, second = (page.locator(".turn.assistant .stats").nth(n).inner_text() for n in (0, 1))
    assert "KV" not in first and "31 prompt tokens" in first, first
    assert "KV reused 40/50 prompt tokens (80%)" in second, second


def test_the_picker_lists_the_servers_models_and_its_choice_answers(open_page, server):
    names = [m["name"] for m in get_json(server + "/api/tags")["models"]]
    if "gemma3-270m:latest" not in names:
        pytest.skip("the store has no second model to pick")
    page = open_page()
    picker = page.locator("#model-select")
    assert picker.is_visible() and page.locator("#model-label").is_hidden()
    assert [o.get_attribute("value") for o in picker.locator("option").all()] == names
    picker.select_option("gemma3-270m:latest")
    page.locator("#empty-model").filter(has_text=re.compile("^gemma3-270m$")).wait_for()
    with page.expect_request("**/api/chat") as req:
        send(page, "Hi")
    assert req.value.post_data_json["model"] == "gemma3-270m:latest"
    answer_stats(page, 0)
    assert "gemma3-270m:latest" in [m["name"] for m in get_json(server + "/api/ps")["models"]]
    page.reload()   # the choice is kept
    page.wait_for_selector("#status-dot.ok")
    assert picker.input_value() == "gemma3-270m:latest"
