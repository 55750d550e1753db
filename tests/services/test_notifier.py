"""The notifier wakes a user only once what it announces is readable."""

from homeserver.services.notifier import Notifier
from homeserver.storage.streams import StreamIdGenerator


async def test_wake_waits_for_lower_positions_still_being_written():
    stream = StreamIdGenerator(0)
    notifier = Notifier()
    notifier.watch(stream)
    token = notifier.token_for("@bob:test")

    slow = stream.allocate()
    slow_position = slow.__enter__()  # position 1: another room's write, still in flight
    with stream.allocate() as position:  # position 2: the message bob should see
        pass
    notifier.notify_at(stream, position, ["@bob:test"])
    # Waking bob now would make him read up to position 0 and miss position 2.
    assert stream.current() == 0
    assert not token.done()

    slow.__exit__(None, None, None)
    assert slow_position == 1 and stream.current() == 2
    assert token.done()


async def test_wake_is_immediate_when_nothing_is_in_flight():
    stream = StreamIdGenerator(5)
    notifier = Notifier()
    notifier.watch(stream)
    token = notifier.token_for("@alice:test")
    other = notifier.token_for("@carol:test")
    with stream.allocate() as position:
        pass
    notifier.notify_at(stream, position, ["@alice:test"])
    assert token.done()
    assert not other.done()


async def test_failed_write_still_releases_later_positions():
    stream = StreamIdGenerator(0)
    notifier = Notifier()
    notifier.watch(stream)
    token = notifier.token_for("@bob:test")
    failing = stream.allocate()
    failing.__enter__()
    with stream.allocate() as position:
        pass
    notifier.notify_at(stream, position, ["@bob:test"])
    assert not token.done()
    failing.__exit__(RuntimeError, RuntimeError("rolled back"), None)
    assert token.done()


async def test_close_ends_every_long_poll_at_once():
    # Shutdown must not wait out the long polls, some of whose clients are long gone.
    notifier = Notifier()
    token = notifier.token_for("@bob:test")
    notifier.close()
    assert token.done()
    assert await notifier.wait(token, 3600) is True
    # A sync that looks again and finds nothing returns instead of waiting.
    assert await notifier.wait(notifier.token_for("@bob:test"), 3600) is False


async def test_waiting_users_counts_only_long_polls_under_way():
    import asyncio

    notifier = Notifier()
    # A sync that took its token and answered without waiting is not a waiter.
    notifier.token_for("@ann:test")
    assert notifier.waiting_users() == 0
    token = notifier.token_for("@bob:test")
    poll = asyncio.create_task(notifier.wait(token, 5))
    await asyncio.sleep(0)
    assert notifier.waiting_users() == 1
    notifier.notify_users(["@bob:test"])
    assert await poll is True
    assert notifier.waiting_users() == 0
    # A wait that times out stops counting too.
    assert await notifier.wait(notifier.token_for("@bob:test"), 0.01) is False
    assert notifier.waiting_users() == 0
