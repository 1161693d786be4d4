"""The chat with a password (``LOCALEDIT_CHAT_PASSWORD``, what any address but loopback requires), and the
doors that stay shut without one: the login page, the pictures, other origins.

One Chainlit server for the module (the real app, as ``tests/chat_ui/test_chat_ui.py`` starts it) in password
mode on loopback; no model is loaded (no edit runs here).
"""

from __future__ import annotations

from contextlib import contextmanager

import httpx
import pytest

from tests.helpers.chat_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, needs_chainlit

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def chat_server_with_password(tiny_models_dir, tmp_path_factory):
    """The chat app in password mode (user ``ada``, ``PASSWORD``) on loopback, for the module."""
    needs_chainlit()
    root = tmp_path_factory.mktemp("chat-auth")
    srv = Server(tiny_models_dir, root / "data", root / "server.log", LOCALEDIT_CHAT_PASSWORD=PASSWORD,
                 LOCALEDIT_CHAT_USER="ada")
    srv.start()
    yield srv
    srv.stop()


@contextmanager
def signing_in(chat_server_with_password, password: str):
    """Chromium on the chat's login page, ``ada`` / ``password`` typed and Sign In clicked: the page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.set_default_timeout(30_000)
        page.goto(chat_server_with_password.url)
        page.wait_for_url("**/login")
        page.locator("#email").fill("ada")
        page.locator("#password").fill(password)
        page.get_by_role("button", name="Sign In").click()
        try:
            yield page
        finally:
            browser.close()


@pytest.mark.browser
def test_the_chat_asks_for_the_password(chat_server_with_password):
    with signing_in(chat_server_with_password, "wrong") as page:
        page.get_by_text("credentials").first.wait_for()  # "Sign in failed. Check the details you provided..."
        assert page.locator("#chat-input").count() == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "20-login.png"))
        page.locator("#password").fill(PASSWORD)
        page.get_by_role("button", name="Sign In").click()
        page.locator("#chat-settings-open-modal").wait_for()  # signed in: the chat's session is up
        assert page.locator("#user-nav-button").inner_text().strip() == "A"  # signed in as ada


def test_pictures_and_other_origins_stay_out(chat_server_with_password):
    with httpx.Client(base_url=chat_server_with_password.url, timeout=30) as client:
        assert client.get("/localedit/files/" + "0" * 64 + ".png").status_code == 401  # not signed in
        refused = client.get("/project/settings?language=en-US", headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and "evil.example" in refused.text
        socket = client.get("/ws/socket.io/?EIO=4&transport=polling", headers={"Origin": "http://evil.example"})
        assert socket.status_code == 403
        assert client.get("/", headers={"Origin": chat_server_with_password.url}).status_code == 200
        login = client.post("/login", data={"username": "ada", "password": "nope"})
        assert login.status_code == 401
        login = client.post("/login", data={"username": "ada", "password": PASSWORD})
        assert login.status_code == 200
        assert client.get("/localedit/files/" + "0" * 64 + ".png").status_code == 404  # signed in: just unknown
        sneaky = client.get("/localedit/files/..%2Fchat_threads.sqlite")  # not a file name: Chainlit's page
        assert b"SQLite format" not in sneaky.content and sneaky.headers["content-type"].startswith("text/html")


def test_the_throttle_counts_failures_per_address_and_forgets_them():
    from chat_ui.access import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(failures=3, window=60, clock=lambda: now[0], max_clients=2)
    for _ in range(3):
        assert throttle.wait("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
        now[0] += 10
    assert throttle.wait("10.0.0.1") == pytest.approx(30)  # the first failure (t=0) ages out at 60
    assert throttle.wait("10.0.0.2") == 0  # per address
    now[0] = 60.0
    assert throttle.wait("10.0.0.1") == 0  # one failure aged out: one more try
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") > 0
    throttle.succeeded("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 0  # a success clears the count
    for client in ("a", "b", "c"):
        throttle.failed(client)
    assert set(throttle._seen) == {"b", "c"}  # bounded: the oldest address is forgotten


@pytest.mark.browser
def test_guessing_the_password_is_refused_after_five_failures(chat_server_with_password):
    """Last in the module: it leaves 127.0.0.1 throttled for a minute."""
    with httpx.Client(base_url=chat_server_with_password.url, timeout=30) as client:
        for _ in range(5):
            assert client.post("/login", data={"username": "ada", "password": "guess"}).status_code == 401
        refused = client.post("/login", data={"username": "ada", "password": PASSWORD})
        assert refused.status_code == 429, refused.text  # the right password too, while it lasts
        assert "Too many failed sign-ins" in refused.json()["detail"] and 0 < int(refused.headers["retry-after"]) <= 60
        assert client.get("/", headers={"Origin": chat_server_with_password.url}).status_code == 200  # only sign-ins wait
    with signing_in(chat_server_with_password, PASSWORD) as page:  # and the login page says why, in our words
        page.get_by_text("Too many failed sign-ins from this address").first.wait_for()
        assert page.locator("#chat-input").count() == 0
        page.screenshot(path=str(ARTIFACTS / "21-login-throttled.png"))
