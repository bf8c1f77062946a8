"""The playground in a real headless browser (Debian's chromium, driven by playwright): type
a prompt, watch tokens stream into the page, hover one for its alternatives, see the
attention heatmap drawn, and keep a screenshot.

Chromium comes from the system (``make test-deps``, which ``make test`` and so ``.ci/run``
run: ``apt-get install -y chromium chromium-driver``); playwright's own browser download is not
used. Without chromium the test fails and says how to install it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_util import raw

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = "playground.png"

# Counts the token spans each time the output changes: more than a few distinct counts
# means the tokens arrived while the page was showing them (streamed), not all at once.
WATCH = """() => {
  window.__counts = [];
  new MutationObserver(() => window.__counts.push(document.querySelectorAll('#output .tok').length))
    .observe(document.getElementById('output'), {childList: true, subtree: true});
}"""
INKED = """() => {
  const c = document.getElementById('attention');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let inked = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 40) inked++;  // blue cells
  return inked;
}"""


def browser_context(user_data: Path):
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the playground test needs Debian's chromium. Install it "
            "with `make test-deps` (or: apt-get update && apt-get install -y chromium "
            "chromium-driver), as `make test` and .ci/run do"
        )
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    context = playwright.chromium.launch_persistent_context(
        str(user_data),
        executable_path=str(CHROMIUM),
        args=FLAGS,
        headless=True,
        viewport={"width": 1280, "height": 900},
    )
    return playwright, context


@pytest.mark.slow
def test_the_playground_streams_explains_and_draws(serve, tmp_path):
    with serve(chat=True) as server:
        playwright, context = browser_context(tmp_path / "profile")
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            page.wait_for_function(
                "document.getElementById('model-info').textContent.includes('tiny')"
            )
            assert "chat template" in page.text_content("#model-info")

            page.fill("#prompt", "Return the")
            page.fill("#seed", "0")
            page.fill("#max-tokens", "150")
            page.evaluate(WATCH)
            page.click("#generate")
            page.wait_for_selector("#output .tok")  # the first tokens are in the DOM
            page.wait_for_selector("#finish-reason", timeout=30_000)
            assert page.get_attribute("#finish-reason", "data-reason") == "length"
            tokens = page.query_selector_all("#output .tok")
            assert len(tokens) == 150
            counts = page.evaluate("window.__counts")
            assert len(set(counts)) >= 3, f"tokens arrived in one piece, not streamed: {counts}"

            # The page shows what the API gives for the same request.
            same = {
                "model": "tiny",
                "prompt": "Return the",
                "max_tokens": 150,
                "seed": 0,
                "temperature": 0.8,
                "top_p": 1.0,
            }
            text = raw(server, "POST", "/v1/completions", same)[2]["choices"][0]["text"]
            shown = "".join(t.get_attribute("data-text") for t in tokens)
            assert shown == text

            # Hovering a token shows its alternatives with probabilities, best first.
            tokens[5].hover()
            page.wait_for_selector("#tooltip:not([hidden])")
            rows = page.query_selector_all("#tooltip .alt")
            assert len(rows) == 5
            percents = [float(r.query_selector(".p").text_content().rstrip("%")) for r in rows]
            assert percents == sorted(percents, reverse=True) and 0 < sum(percents) <= 100.5
            assert "chosen" in page.text_content("#tooltip .title")

            # The heatmap drew, and redraws for another layer and head.
            page.wait_for_selector("#attention[data-drawn]")
            first = page.get_attribute("#attention", "data-drawn")
            assert first.startswith("0/0/")
            assert page.evaluate(INKED) > 200
            page.select_option("#layer", "1")
            page.select_option("#head", "2")
            assert page.get_attribute("#attention", "data-drawn").startswith("1/2/")
            tokens[5].hover()
            page.wait_for_selector("#tooltip:not([hidden])")
            shot = tmp_path / SCREENSHOT
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            print(f"screenshot: {shot}")

            # Chat mode: a message and a streamed reply in bubbles.
            page.click("#mode-chat")
            page.fill("#prompt", "Hello there")
            page.press("#prompt", "Enter")
            page.wait_for_selector("#finish-reason", timeout=30_000)
            assert page.text_content(".bubble.user") == "Hello there"
            assert page.query_selector(".bubble.assistant") is not None
            assert not errors, errors
        finally:
            context.close()
            playwright.stop()
