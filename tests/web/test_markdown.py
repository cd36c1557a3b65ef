"""web/markdown.js, the page's renderer of model text, run in chromium as a pure function: it must
build the usual Markdown structure and leave any HTML, script or unsafe link in the text inert."""
from __future__ import annotations

import pytest

# Renders `text` into a fresh <div> and reports what the DOM holds, for the assertions below.
RENDER = """(text) => {
  const box = document.createElement("div");
  box.append(window.tsMarkdown.render(text));
  document.body.append(box);
  return {
    text: box.textContent,
    tags: [...box.querySelectorAll("*")].map((e) => e.tagName.toLowerCase()),
    hrefs: [...box.querySelectorAll("a")].map((a) => a.href),
    attrs: [...box.querySelectorAll("*")].flatMap((e) => [...e.attributes].map((a) => a.name)),
    codes: [...box.querySelectorAll("pre code")].map((c) => c.textContent),
    html: box.innerHTML,
  };
}"""


@pytest.fixture(scope="module")
def page(browser, web_dir):
    # A bare page without the app's Content-Security-Policy: if the renderer let markup through,
    # it would run here and the tests would see it.
    context = browser.new_context()
    p = context.new_page()
    p.set_content("<!doctype html><html><body></body></html>")
    p.add_script_tag(path=str(web_dir / "markdown.js"))
    yield p
    context.close()


def render(page, text: str) -> dict:
    return page.evaluate(RENDER, text)


INJECTIONS = "\n".join([
    'Hello <img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    "[click me](javascript:window.__pwned=3) and [again](JaVaScRiPt:window.__pwned=4)",
    "[data](data:text/html,<script>window.__pwned=5</script>)",
    '<a href="javascript:window.__pwned=6">raw anchor</a>',
    '<iframe src="javascript:window.__pwned=7"></iframe>',
    '![pic](javascript:window.__pwned=8)',
    '**bold <svg onload="window.__pwned=9">**',
    "```html",
    '<img src=y onerror="window.__pwned=10">',
    "```",
])


def test_html_and_scripts_in_model_text_stay_inert(page):
    out = render(page, INJECTIONS)
    page.wait_for_timeout(300)   # time for an error or load handler to fire, had one been created
    assert page.evaluate("window.__pwned") is None
    assert not {"img", "script", "iframe", "svg"} & set(out["tags"])
    assert not any(a.startswith("on") or a in ("src", "style") for a in out["attrs"]), out["attrs"]
    assert out["hrefs"] == []
    # The markup is shown to the reader as the characters the model wrote.
    for literal in ('<img src=x onerror="window.__pwned=1">', "<script>window.__pwned=2</script>",
                    "[click me](javascript:window.__pwned=3)", '<a href="javascript:window.__pwned=6">',
                    '<svg onload="window.__pwned=9">'):
        assert literal in out["text"]
    assert out["codes"] == ['<img src=y onerror="window.__pwned=10">']


def test_links_keep_only_web_and_mail_targets(page):
    out = render(page, "[site](https://example.com/a_b) <https://x.org> mailto [me](mailto:a@b.c) "
                       "and https://example.org/path?q=1.")
    assert out["hrefs"] == ["https://example.com/a_b", "https://x.org/", "mailto:a@b.c", "https://example.org/path?q=1"]
    assert "<" not in out["text"]
    anchors = page.evaluate("[...document.querySelectorAll('a')].slice(-4).map((a) => a.rel)")
    assert all("noopener" in rel for rel in anchors)


def test_code_block_keeps_text_exactly_and_has_a_copy_button(page):
    source = 'def f(x):\n    return x < 2 and "<b>" * 3\n\n# end'
    out = render(page, f"Before\n\n```python\n{source}\n```\nAfter")
    assert out["codes"] == [source]
    assert "button" in out["tags"]
    html = out["html"]
    assert "python" in html and ">Copy<" in html
    assert out["text"].startswith("Before") and out["text"].endswith("After")


def test_unfinished_fence_renders_as_code_while_streaming(page):
    out = render(page, "Here:\n```js\nconst a = 1;\nconst b")
    assert out["codes"] == ["const a = 1;\nconst b"]


def test_markdown_structure(page):
    text = "\n".join([
        "# Title", "Some **bold**, *em*, ~~gone~~ and `x < y`.", "second line", "",
        "- one", "- two", "  - nested", "", "3. three", "4. four", "",
        "> quoted", "", "| a | b |", "|---|--:|", "| 1 | 2 |", "", "---", r"\*not em\*",
    ])
    out = render(page, text)
    tags = out["tags"]
    for tag in ("h1", "strong", "em", "del", "code", "br", "ul", "ol", "li", "blockquote", "table", "th", "td", "hr"):
        assert tag in tags, tag
    assert tags.count("ul") == 2   # the nested list sits inside the first
    assert 'start="3"' in out["html"]
    assert "*not em*" in out["text"]
    assert "x < y" in out["text"]
