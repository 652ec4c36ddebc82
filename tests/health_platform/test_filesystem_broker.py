"""The filesystem broker's messages appear whole: a poller never takes a half-written one.

kombu's own transport creates the file under its final name, then writes it; a worker polling in
between read an empty message and died with JSONDecodeError (seen in a parallel test run).
"""

import os
import threading
import time
import uuid

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport.virtual import Empty

from health_platform import filesystem_broker


@pytest.fixture
def channel(tmp_path):
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": False}
    with Connection("filesystem://", transport=filesystem_broker.TRANSPORT, transport_options=options) as connection:
        yield connection.default_channel


def test_a_message_being_written_is_invisible_to_a_poller(channel, monkeypatch):
    seen_while_writing = []
    replace = os.replace

    def poll_then_replace(source, destination):
        assert os.path.getsize(source) > 0  # written in full under its temporary name...
        try:  # ...which no queue matches: a poller finds nothing yet
            seen_while_writing.append(channel._get("custodian"))
        except Empty:
            seen_while_writing.append(None)
        replace(source, destination)

    monkeypatch.setattr(filesystem_broker.os, "replace", poll_then_replace)
    channel._put("custodian", {"body": "x" * 100_000})
    assert seen_while_writing == [None]
    assert channel._get("custodian") == {"body": "x" * 100_000}
    with pytest.raises(Empty):
        channel._get("custodian")


def test_messages_keep_their_queue(channel):
    """(Order is by millisecond, as in kombu's transport; messages within one millisecond are unordered.)"""
    for n in range(3):
        channel._put("compute", {"n": n})
    channel._put("custodian", {"n": "other"})
    assert sorted(channel._get("compute")["n"] for _ in range(3)) == [0, 1, 2]
    assert channel._get("custodian") == {"n": "other"}
    assert not [name for name in os.listdir(channel.data_folder_in) if name.startswith(".partial")]


def test_both_celery_apps_use_it_for_filesystem_urls_and_leave_redis_alone(tmp_path):
    import analytics.compute_app  # noqa: F401  (each app installs it on import)
    import health_platform.celery  # noqa: F401

    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    with Connection("filesystem://", transport_options=options) as connection:
        assert isinstance(connection.transport, filesystem_broker.Transport)
    assert not isinstance(Connection("redis://127.0.0.1:1/0").transport, filesystem_broker.Transport)


def _connection(folder, polling_interval):
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "store_processed": False,
        "polling_interval": polling_interval,
    }
    return Connection("filesystem://", transport=filesystem_broker.TRANSPORT, transport_options=options)


def _queue_name() -> str:
    """Exchanges and bindings of kombu's filesystem transport are shared by the whole process: a name of
    its own keeps a test clear of what another test in this process declared ("compute", say)."""
    return f"probe-{uuid.uuid4().hex}"


def _publish_later(folder, delay, name, body):
    def publish():
        time.sleep(delay)
        with _connection(folder, 5) as connection:
            connection.SimpleQueue(name).put(body)

    thread = threading.Thread(target=publish)
    thread.start()
    return thread


def _drain_one(connection, name, timeout):
    received = []
    queue = Queue(name, Exchange(name), name)
    with connection.Consumer(queue, callbacks=[lambda body, message: (received.append(body), message.ack())]):
        start = time.monotonic()
        connection.drain_events(timeout=timeout)
        return received, time.monotonic() - start


def test_an_idle_consumer_takes_a_new_message_at_once_not_after_the_polling_interval(tmp_path):
    name = _queue_name()
    with _connection(tmp_path, 5) as connection:  # kombu would sleep 5 s between empty polls
        connection.SimpleQueue(name)  # declared, empty
        thread = _publish_later(tmp_path, 0.3, name, {"n": 1})
        received, elapsed = _drain_one(connection, name, timeout=10)
        thread.join()
    assert received == [{"n": 1}]
    assert elapsed < 2


def test_without_inotify_it_polls_as_kombu_does(tmp_path, monkeypatch):
    def no_inotify(folder):
        raise AttributeError("inotify_init1")

    monkeypatch.setattr(filesystem_broker, "FolderWatch", no_inotify)
    name = _queue_name()
    with _connection(tmp_path, 0.05) as connection:
        connection.SimpleQueue(name)
        thread = _publish_later(tmp_path, 0.2, name, {"n": 2})
        received, _ = _drain_one(connection, name, timeout=10)
        thread.join()
    assert received == [{"n": 2}]


def test_an_empty_wait_ends_at_its_timeout(tmp_path):
    name = _queue_name()
    with _connection(tmp_path, 5) as connection:
        connection.SimpleQueue(name)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            _drain_one(connection, name, timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 2


def test_the_watch_wakes_for_a_message_renamed_in_and_not_for_a_partial_one_being_written(tmp_path):
    watch = filesystem_broker.FolderWatch(str(tmp_path))
    try:
        (tmp_path / ".partial-x").write_bytes(b"half")  # created and written: no event
        assert watch.wait(0.1) is False
        os.replace(tmp_path / ".partial-x", tmp_path / "1_x.compute.msg")
        assert watch.wait(5) is True
        assert watch.wait(0.1) is False  # consumed
    finally:
        watch.close()
