"""Sign-in, sign-out, the lobby, the game page, and CSRF on every state-changing request."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from .conftest import PASSWORD, World, purchase


def test_pages_need_sign_in(world: World) -> None:
    browser = world.browser()
    for path in ("/", "/play/anything"):
        response = browser.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert browser.get("/me/balance").status_code == 401
    assert browser.get("/payments/orders/nope").status_code == 401
    assert browser.post_json("/payments/orders", {}).status_code == 401


def test_sign_in_lobby_and_sign_out(world: World) -> None:
    game = world.game()
    hidden = f"nogame-{game.name}"
    world.platform.create_partner()  # a partner without a client URL is not a game
    player = world.player("250.50")
    browser = world.browser()
    assert browser.sign_in(player.username, "wrong password").status_code == 401
    assert browser.sign_in("nobody-" + player.username).status_code == 401
    response = browser.sign_in(player.username)
    assert response.status_code == 303 and response.headers["location"] == "/"

    lobby = browser.get("/")
    assert lobby.status_code == 200
    assert "250.50" in lobby.text and "XAG" in lobby.text
    assert f"/play/{game.name}" in lobby.text and f"Game {game.name}" in lobby.text
    assert hidden not in lobby.text
    assert "frame-ancestors 'none'" in lobby.headers["content-security-policy"]
    assert browser.get("/me/balance").json() == {"balance": "250.50", "currency": "XAG"}

    # Sign-out needs the CSRF token too.
    assert browser.client.post("/logout", data={}).status_code == 403
    assert browser.client.post("/logout", data={"csrf_token": browser.csrf}).status_code == 303
    assert browser.get("/").status_code == 303


def test_next_is_local_only(world: World) -> None:
    player = world.player()
    browser = world.browser()
    browser.get("/login")
    for target, expected in (("/play/x", "/play/x"), ("https://evil.example/", "/"), ("//e", "/")):
        browser.client.cookies.clear()
        browser.get("/login")
        response = browser.client.post(
            "/login",
            data={
                "csrf_token": browser.csrf,
                "username": player.username,
                "password": PASSWORD,
                "next": target,
            },
        )
        assert response.headers["location"] == expected


def test_csrf_required_on_every_state_change(world: World) -> None:
    game = world.game()
    player = world.player()
    browser = world.browser()
    browser.get("/login")
    response = browser.client.post(
        "/login", data={"username": player.username, "password": PASSWORD}
    )
    assert response.status_code == 403
    response = browser.client.post(
        "/login",
        data={"username": player.username, "password": PASSWORD, "csrf_token": "forged"},
    )
    assert response.status_code == 403
    assert browser.sign_in(player.username).status_code == 303
    config = browser.play(game.name)
    body = {"token": config["token"], "message": purchase()}
    assert browser.post_json("/payments/orders", body, csrf=False).status_code == 403
    created = browser.post_json("/payments/orders", body)
    assert created.status_code == 201, created.text
    order_id = created.json()["order"]["orderId"]
    pay = {"method": "wallet"}
    assert browser.post_json(f"/payments/orders/{order_id}/pay", pay, csrf=False).status_code == 403
    assert world.order_row(order_id)["state"] == "created"


def test_game_page_embeds_the_launch_url(world: World) -> None:
    game = world.game("http://127.0.0.1:9/client/index.html?skin=dark")
    player = world.player()
    browser = world.browser(player)
    page = browser.get(f"/play/{game.name}")
    assert page.status_code == 200
    config = browser.play(game.name)
    assert config["gameOrigin"] == "http://127.0.0.1:9"
    assert "frame-src http://127.0.0.1:9" in page.headers["content-security-policy"]
    src = page.text.split('id="game" src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    query = parse_qs(urlsplit(src).query)
    assert src.startswith("http://127.0.0.1:9/client/index.html?skin=dark&")
    assert query["language"] == ["en"] and query["currency"] == ["XAG"]
    assert len(query["token"][0]) == 36
    assert browser.get("/play/no-such-game").status_code == 404


def test_blocked_player_cannot_play(world: World) -> None:
    game = world.game()
    player = world.player()
    browser = world.browser(player)
    world.platform.block(player.id)
    # Blocking ends the sign-in; signed in again, the player still cannot play.
    assert browser.get(f"/play/{game.name}").headers["location"].startswith("/login")
    assert browser.sign_in(player.username).status_code == 303
    assert browser.get(f"/play/{game.name}").status_code == 403


def test_a_form_with_a_nul_character_is_refused(world: World) -> None:
    """U+0000 in any form field is refused with 400 before a handler uses it (PostgreSQL cannot
    store it: a sign-in with one in the username was a 500 there)."""
    player = world.player()
    browser = world.browser()
    browser.get("/login")
    response = browser.client.post(
        "/login",
        data={"csrf_token": browser.csrf, "username": player.username + "\x00", "password": "x"},
    )
    assert response.status_code == 400, response.text
    assert "U+0000" in response.text
    assert browser.sign_in(player.username).status_code == 303
