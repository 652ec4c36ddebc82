"""The filesystem broker's messages appear whole: a poller never takes a half-written one.

kombu's own transport creates the file under its final name, then writes it; a worker polling in
between read an empty message and died with JSONDecodeError (seen in a parallel test run).
"""

import os

import pytest
from kombu import Connection
from kombu.transport.virtual import Empty

from analytics import filesystem_broker


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
