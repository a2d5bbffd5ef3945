"""Presenter rooms: the store (cnnviz.rooms) and its HTTP routes (ui.room_routes), and the page side
(ui.room) in AppTest."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from apptest_helpers import button, open_page
from async_helpers import run as run_async
from starlette.applications import Starlette
from starlette.testclient import TestClient

from cnnviz.rooms import (
    CODE_ALPHABET,
    CODE_LENGTH,
    IDLE_SECONDS,
    MAX_QUERY,
    BadLocation,
    Location,
    RoomStore,
    Step,
    TooManyFollowers,
    TooManyRooms,
    UnknownRoom,
    WrongToken,
    normalize_code,
)
from ui.room_routes import MAX_BODY, room_routes


class Clock:
    """A clock the test moves by hand (the store's expiry reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CONV = Location("/Convolution", "pad=0&s=2")
POOL = Location("/Pooling", "")


# -- codes and tokens ------------------------------------------------------------------------------

def test_codes_are_five_unambiguous_letters_and_differ():
    store = RoomStore(max_rooms=500)
    codes = [store.open().code for _ in range(300)]
    assert len(set(codes)) == 300
    assert all(len(code) == CODE_LENGTH == 5 and set(code) <= set(CODE_ALPHABET) for code in codes)
    assert not set("".join(codes)) & set("IO01")
    # Random, not a counter: all 24 letters turn up in 1,500 of them.
    assert set("".join(codes)) == set(CODE_ALPHABET) and len(CODE_ALPHABET) == 24


@pytest.mark.parametrize("typed, code", [("kxprt", "KXPRT"), (" KXPRT\n", "KXPRT"), ("KXPRI", None),
                                         ("KXPR0", None), ("KXPR", None), ("KXPRTT", None), (None, None),
                                         ("KX/RT", None)])
def test_codes_are_read_case_insensitively_and_checked(typed, code):
    assert normalize_code(typed) == code


def test_each_room_has_its_own_secret_token_and_only_it_moves_the_room():
    store = RoomStore()
    first, second = store.open(), store.open()
    assert first.token != second.token and len(first.token) >= 32
    with pytest.raises(WrongToken):
        store.publish(first.code, second.token, CONV)
    for wrong in (None, "", first.token[:-1], first.token + "x", 12345, [first.token]):
        with pytest.raises(WrongToken):
            store.publish(first.code, wrong, CONV)
    with pytest.raises(UnknownRoom):
        store.publish("ZZZZZ", first.token, CONV)
    with pytest.raises(WrongToken):
        store.close(first.code, second.token)
    assert store.get(first.code).version == 0  # nothing above moved it
    assert store.publish(first.code, first.token, CONV) == 1


# -- versions and waiting ------------------------------------------------------------------------

def test_versions_count_changes_of_location_only():
    store = RoomStore()
    room = store.open()
    assert store.get(room.code) == store.get(room.code) and store.get(room.code).location is None
    assert store.publish(room.code, room.token, CONV) == 1
    assert store.publish(room.code, room.token, Location("/Convolution", "pad=0&s=2")) == 1  # the same: a beat
    assert store.heartbeat(room.code, room.token) == 1
    assert store.publish(room.code, room.token, Location("/Convolution", "pad=0&s=2", Step("conv", "step", 3))) == 2
    assert store.publish(room.code, room.token, POOL) == 3
    snapshot = store.get(room.code)
    assert (snapshot.version, snapshot.location) == (3, POOL)
    assert snapshot.as_dict() == {"code": room.code, "version": 3, "path": "/Pooling", "query": "", "step": None}


def test_wait_answers_at_once_when_the_follower_is_behind_and_else_after_its_timeout():
    store = RoomStore()
    room = store.open()
    store.publish(room.code, room.token, CONV)

    async def scenario():
        start = time.monotonic()
        behind = await store.wait(room.code, since=0, timeout=5)
        ahead = await store.wait(room.code, since=7, timeout=5)  # a version from before: resync at once
        fast = time.monotonic() - start
        start = time.monotonic()
        unchanged = await store.wait(room.code, since=1, timeout=0.3)
        return behind, ahead, fast, unchanged, time.monotonic() - start

    behind, ahead, fast, unchanged, waited = run_async(scenario())
    assert behind.version == ahead.version == 1 and behind.location == CONV and fast < 0.1
    assert unchanged.version == 1 and 0.29 < waited < 1.0


def test_a_publish_from_another_thread_wakes_the_waiting_followers_at_once():
    store = RoomStore()
    room = store.open()

    async def followers():
        return await asyncio.gather(*(store.wait(room.code, since=0, timeout=10) for _ in range(50)))

    def presenter():
        time.sleep(0.3)  # the script thread of the presenter's session
        store.publish(room.code, room.token, CONV)

    threading.Thread(target=presenter).start()
    start = time.monotonic()
    seen = run_async(followers())
    assert time.monotonic() - start < 2.0  # not the 10 s timeout
    assert {s.version for s in seen} == {1} and {s.location for s in seen} == {CONV}


def test_closing_a_room_ends_its_followers_waits():
    store = RoomStore()
    room = store.open()

    async def scenario():
        waiting = asyncio.create_task(store.wait(room.code, since=0, timeout=10))
        await asyncio.sleep(0.1)
        store.close(room.code, room.token)
        return await asyncio.wait_for(waiting, 2), await store.wait(room.code, since=0, timeout=1)

    assert run_async(scenario()) == (None, None)
    assert store.get(room.code) is None and len(store) == 0
    with pytest.raises(UnknownRoom):
        store.publish(room.code, room.token, CONV)


def test_followers_per_room_are_bounded():
    store = RoomStore(max_followers=3)
    room = store.open()

    async def scenario():
        waiting = [asyncio.create_task(store.wait(room.code, 0, 5)) for _ in range(3)]
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyFollowers):
            await store.wait(room.code, 0, 5)
        store.publish(room.code, room.token, CONV)
        return await asyncio.gather(*waiting)

    assert [s.version for s in run_async(scenario())] == [1, 1, 1]


# -- expiry and limits -----------------------------------------------------------------------------

def test_a_room_closes_a_minute_after_the_presenters_last_sign_of_life():
    clock = Clock()
    store = RoomStore(clock=clock, idle_seconds=60)
    room = store.open()
    clock.now += 59
    store.publish(room.code, room.token, CONV)  # the page is there
    clock.now += 59
    assert store.heartbeat(room.code, room.token) == 1  # still there, 118 s after opening
    clock.now += 60
    assert store.get(room.code) is not None  # exactly 60 s of silence: not yet
    clock.now += 0.5
    assert store.get(room.code) is None and len(store) == 0
    with pytest.raises(UnknownRoom):
        store.heartbeat(room.code, room.token)


def test_an_expired_room_ends_the_followers_waits():
    clock = Clock()
    store = RoomStore(clock=clock, idle_seconds=60)
    room = store.open()

    async def scenario():
        waiting = asyncio.create_task(store.wait(room.code, since=0, timeout=10))
        await asyncio.sleep(0.05)
        clock.now += 61
        store.get("AAAAA")  # any use of the store notices the silence
        return await asyncio.wait_for(waiting, 2)

    assert run_async(scenario()) is None


def test_the_number_of_rooms_is_bounded_and_expired_rooms_free_their_places():
    clock = Clock()
    store = RoomStore(clock=clock, max_rooms=3)
    for _ in range(3):
        store.open()
    with pytest.raises(TooManyRooms, match="All 3 rooms"):
        store.open()
    clock.now += IDLE_SECONDS + 1
    assert store.open().code and len(store) == 1


def test_a_location_is_a_relative_path_of_this_app_and_a_bounded_query():
    assert Location.parse({"path": "/", "query": ""}) == Location("/")
    assert Location.parse({"path": "/VGG16_explorer", "query": "?net=vgg16&layer=3"}).query == "net=vgg16&layer=3"
    step = Location.parse({"path": "/Convolution", "query": "pad=0",
                           "step": {"key": "conv", "param": "step", "step": 4}}).step
    assert step == Step("conv", "step", 4)
    for path in ("//evil.example", "https://evil.example/x", "/\\evil.example", "javascript:alert(1)",
                 "Convolution", "/a//b", "/../etc", "/a b", "/" + "a" * 200, None, 3):
        with pytest.raises(BadLocation, match="path"):
            Location.parse({"path": path, "query": ""})
    for query in ("a=1#frag", "a=<script>", 'a="x"', "a=1 2", "a=\\x", "a=" + "1" * MAX_QUERY, None):
        with pytest.raises(BadLocation, match="query"):
            Location.parse({"path": "/Pooling", "query": query})
    for step in ({"key": "conv", "param": "step", "step": -1}, {"key": "conv", "param": "step", "step": True},
                 {"key": "conv", "param": "step", "step": 1.5}, {"key": "conv", "param": "step", "step": 10**7},
                 {"key": "<b>", "param": "step", "step": 1}, {"key": "conv", "param": "", "step": 1}, "conv"):
        with pytest.raises(BadLocation, match="step"):
            Location.parse({"path": "/Pooling", "query": "", "step": step})
    with pytest.raises(BadLocation):
        Location.parse(["/Pooling"])


def test_the_visitors_own_parameters_are_not_part_of_a_room():
    location = Location.parse({"path": "/Convolution", "query": "present=1&pad=0&room=KXPRT&stop=2&x=1%2C2"},
                              app_params=("present", "room", "stop"))
    assert location.query == "pad=0&x=1%2C2"
    assert location.link("KXPRT") == "/Convolution?pad=0&x=1%2C2&room=KXPRT"
    assert Location("/").link("KXPRT") == "/?room=KXPRT"


# -- the HTTP routes --------------------------------------------------------------------------------

@pytest.fixture
def served():
    """A store, and a client of a Starlette app with its routes (a 0.5 s long-poll)."""
    store = RoomStore(app_params=("present", "room"))
    with TestClient(Starlette(routes=room_routes(store, long_poll_seconds=0.5))) as client:
        yield store, client


def test_route_follow_answers_at_once_when_behind_and_204_when_nothing_changed(served):
    store, client = served
    room = store.open()
    store.publish(room.code, room.token, Location("/Convolution", "pad=0", Step("conv", "step", 2)))
    answer = client.get(f"/api/rooms/{room.code.lower()}?since=0")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert answer.json() == {"code": room.code, "version": 1, "path": "/Convolution", "query": "pad=0",
                             "step": {"key": "conv", "param": "step", "step": 2}}
    start = time.monotonic()
    answer = client.get(f"/api/rooms/{room.code}?since=1")
    assert answer.status_code == 204 and 0.45 < time.monotonic() - start < 3
    assert client.get(f"/api/rooms/{room.code}?since=x").status_code == 400
    assert client.get("/api/rooms/ZZZZZ").status_code == 404
    assert client.get("/api/rooms/not-a-code").status_code == 404


def test_route_publish_wakes_a_waiting_follower(served):
    store, client = served
    room = store.open()
    store.publish(room.code, room.token, CONV)
    answers = []
    follower = threading.Thread(target=lambda: answers.append(client.get(f"/api/rooms/{room.code}?since=1")))
    start = time.monotonic()
    follower.start()
    time.sleep(0.1)
    posted = client.post(f"/api/rooms/{room.code}", json={"token": room.token, "path": "/Pooling", "query": "k=3"})
    follower.join(5)
    assert posted.status_code == 200 and posted.json() == {"version": 2}
    assert answers[0].status_code == 200 and answers[0].json()["path"] == "/Pooling"
    assert time.monotonic() - start < 0.45  # woken by the publish, not by the 0.5 s long-poll's end


def test_route_publish_refuses_anyone_without_the_token(served):
    store, client = served
    room = store.open()
    where = {"path": "/Pooling", "query": ""}
    assert client.post(f"/api/rooms/{room.code}", json=where).status_code == 403
    assert client.post(f"/api/rooms/{room.code}", json={**where, "token": "guess"}).status_code == 403
    assert client.post(f"/api/rooms/{room.code}", json={"token": "guess"}).status_code == 403  # a heartbeat too
    assert client.post("/api/rooms/ZZZZZ", json={**where, "token": room.token}).status_code == 404
    assert store.get(room.code).version == 0
    refused = client.post(f"/api/rooms/{room.code}", json={"token": room.token, "path": "//evil.example"})
    assert refused.status_code == 400 and "path" in refused.json()["error"]
    assert client.post(f"/api/rooms/{room.code}", content=b"{not json").status_code == 400
    assert client.post(f"/api/rooms/{room.code}", json=[room.token]).status_code == 400
    too_big = json.dumps({"token": room.token, "path": "/", "query": "a" * MAX_BODY})
    assert client.post(f"/api/rooms/{room.code}", content=too_big).status_code == 413
    assert store.get(room.code).version == 0
    beat = client.post(f"/api/rooms/{room.code}", json={"token": room.token})
    assert beat.status_code == 200 and beat.json() == {"version": 0}
    ok = client.post(f"/api/rooms/{room.code}", json={"token": room.token, "path": "/Pooling", "query": "present=1"})
    assert ok.status_code == 200 and store.get(room.code).location == Location("/Pooling", "")


def test_route_student_link_opens_the_presenters_page_in_the_room(served):
    store, client = served
    room = store.open()
    first = client.get(f"/r/{room.code}", follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"] == f"/?room={room.code}"  # nothing yet
    store.publish(room.code, room.token, Location("/Convolution", "pad=0&step=3"))
    answer = client.get(f"/r/{room.code.lower()}", follow_redirects=False)
    assert answer.status_code == 302 and answer.headers["location"] == f"/Convolution?pad=0&step=3&room={room.code}"
    unknown = client.get("/r/<b>oops", follow_redirects=False)
    assert unknown.status_code == 404 and "Room &lt;b&gt;oops is not open" in unknown.text
    assert "<b>" not in unknown.text and 'href="/"' in unknown.text
    store.close(room.code, room.token)
    assert client.get(f"/r/{room.code}", follow_redirects=False).status_code == 404


def test_the_app_serves_the_room_routes():
    from ui.serving import ROUTES

    paths = {(route.path, method) for route in ROUTES for method in route.methods or ()}
    assert {("/api/rooms/{code}", "GET"), ("/api/rooms/{code}", "POST"), ("/r/{code}", "GET")} <= paths


# -- the pages (AppTest) ----------------------------------------------------------------------------

def _components(at) -> dict:
    return {element.key: json.loads(element.proto.json) for element in at.get("bidi_component")}


def test_a_presenter_opens_a_room_and_every_page_publishes_it():
    from ui.room_routes import ROOMS

    at = open_page("pages/1_Convolution.py")
    assert _components(at)["room.resume"] == {"mode": "resume"}  # no token in a page that presents nothing
    button(at, "Open a room").click().run()
    publisher = _components(at)["room.publisher"]
    code, token = publisher["code"], publisher["token"]
    assert publisher["mode"] == "present" and publisher["link"].endswith(f"/r/{code}")
    assert ROOMS.get(code) is not None and ROOMS.authorize(code, token) is None
    assert any(f"Room **{code}** is open" in m.value for m in at.markdown)
    at.switch_page("pages/2_Pooling.py").run()
    assert _components(at)["room.publisher"]["code"] == code
    button(at, "Close the room").click().run()
    assert ROOMS.get(code) is None and "room.publisher" not in _components(at)


def test_a_student_follows_leaves_and_rejoins_without_ever_getting_the_token():
    from ui.room_routes import ROOMS

    room = ROOMS.open()
    ROOMS.publish(room.code, room.token, Location("/Convolution", ""))
    at = open_page("pages/1_Convolution.py", room=room.code.lower())
    components = _components(at)
    assert components["room.follower"]["code"] == room.code
    assert room.token not in json.dumps(components) and "room.publisher" not in components
    assert not [b for b in at.button if b.label == "Open a room"]  # a follower is not offered to present
    button(at, "Leave").click().run()
    assert "room" not in at.query_params and "room.follower" not in _components(at)
    button(at, f"Rejoin room {room.code}").click().run()
    assert at.query_params["room"] == [room.code] and _components(at)["room.follower"]["code"] == room.code
    ROOMS.close(room.code, room.token)
    at.run()
    assert "room.follower" not in _components(at)
    assert any(f"Room {room.code} is not open" in i.value for i in at.info)
    button(at, "Dismiss").click().run()
    assert "room" not in at.query_params and not at.info


def test_a_link_with_a_malformed_room_code_says_so():
    at = open_page("pages/2_Pooling.py", room="K7P2")
    warning = "The link's value room='K7P2' was ignored: a room's code is five letters, like KXPRT."
    assert [w.value for w in at.warning] == [warning]
    assert "room.follower" not in _components(at)


def test_a_presenter_whose_room_expired_is_told_so():
    from ui.room_routes import ROOMS

    at = open_page("pages/2_Pooling.py")
    button(at, "Open a room").click().run()
    code = _components(at)["room.publisher"]["code"]
    presenting = at.session_state["room.presenting"]
    ROOMS.close(code, presenting["token"])  # as the expiry would
    at.run()
    assert "room.publisher" not in _components(at)
    assert any(f"Room {code} has ended" in w.value for w in at.warning)
    at.run()
    assert not any(f"Room {code} has ended" in w.value for w in at.warning)  # said once
