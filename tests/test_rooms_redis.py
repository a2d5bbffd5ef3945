"""Presenter rooms in Redis (cnnviz.rooms_redis): the same behaviour as the in-process store, and two app
servers (two stores on one Redis) sharing a room."""

import time

import pytest

from async_helpers import run as run_async
from cnnviz.rooms import Location, Step, TooManyRooms, UnknownRoom, WrongToken
from cnnviz.rooms_redis import RedisRoomStore


def test_a_room_opened_on_one_server_is_driven_and_followed_on_another(redis_server):
    server_a, server_b = RedisRoomStore(redis_server), RedisRoomStore(redis_server)
    opened = server_a.open()
    assert server_b.get(opened.code).version == 0 and server_b.get(opened.code).location is None
    here = Location("/Convolution", "pad=0", Step("conv.stepper", "step", 3))
    assert server_a.publish(opened.code, opened.token, here) == 1
    assert server_a.publish(opened.code, opened.token, here) == 1  # the same place: a heartbeat
    assert server_b.get(opened.code).location == here
    with pytest.raises(WrongToken):
        server_b.publish(opened.code, "not the token", Location("/Pooling"))
    with pytest.raises(WrongToken):
        server_b.publish(opened.code, None, Location("/Pooling"))
    server_b.authorize(opened.code, opened.token)  # the presenter's tab, served by the other server
    assert server_b.publish(opened.code, opened.token, Location("/Pooling")) == 2
    server_a.close(opened.code, opened.token)
    assert server_b.get(opened.code) is None
    with pytest.raises(UnknownRoom):
        server_b.heartbeat(opened.code, opened.token)


def test_a_follower_on_one_server_wakes_when_the_presenter_moves_on_another(redis_server):
    server_a, server_b = RedisRoomStore(redis_server), RedisRoomStore(redis_server)
    opened = server_a.open()

    async def follow():
        import asyncio

        waiting = asyncio.create_task(server_b.wait(opened.code, 0, 10))
        await asyncio.sleep(0.3)
        start = time.monotonic()
        server_a.publish(opened.code, opened.token, Location("/VGG16_explorer", "model=vgg11"))
        snapshot = await waiting
        return snapshot, time.monotonic() - start, await server_b.wait(opened.code, snapshot.version, 0.3)

    snapshot, delay, unchanged = run_async(follow())
    assert snapshot.version == 1 and snapshot.location.query == "model=vgg11"
    assert delay < 1.0  # within a second of the presenter's move
    assert unchanged.version == 1  # nothing new: the long-poll ends at its timeout with the same version


def test_a_silent_presenters_room_expires_and_rooms_are_bounded(redis_server):
    store = RedisRoomStore(redis_server, idle_seconds=1, max_rooms=2)
    first, second = store.open(), store.open()
    with pytest.raises(TooManyRooms):
        store.open()
    store.heartbeat(first.code, first.token)
    time.sleep(1.6)
    assert store.get(first.code) is None and store.get(second.code) is None  # nobody beat: both gone
    assert len(store) == 0
    third = store.open()  # their places are free again
    assert store.get(third.code).version == 0


def test_the_server_picks_redis_when_told(redis_server, monkeypatch):
    monkeypatch.setenv("CNNVIZ_REDIS_URL", redis_server)
    from ui.room_routes import make_room_store
    assert isinstance(make_room_store(), RedisRoomStore)
    monkeypatch.delenv("CNNVIZ_REDIS_URL")
    assert not isinstance(make_room_store(), RedisRoomStore)


def test_short_links_in_redis_are_shared_by_the_servers(redis_server):
    from cnnviz.links import LinkError, RedisShortLinks, code_for
    server_a, server_b = RedisShortLinks(redis_server), RedisShortLinks(redis_server)
    code = server_a.shorten("/Pooling?kind=mean&step=3")
    assert code == code_for("/Pooling?kind=mean&step=3")
    assert server_b.resolve(code) == "/Pooling?kind=mean&step=3"
    assert server_b.resolve("NOPE42") is None and server_b.resolve("../x") is None
    with pytest.raises(LinkError):
        server_a.shorten("https://evil.example/")
