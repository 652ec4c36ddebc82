"""kombu's filesystem transport, with messages that appear whole. Free of Django.

kombu (5.5) creates a message's file under its final name in the queue folder and then writes it: a
worker polling in between takes the empty file, fails to decode it (the worker dies with
JSONDecodeError) and the message is lost. Here a message is written under a name no queue matches
and renamed into place (os.replace, atomic within the folder), so a reader sees all of it or nothing.

An idle worker also notices a new message at once: kombu sleeps `polling_interval` (0.1 s here)
between empty polls, which each step of a pipeline paid on average half of, on every hop (start, gate,
compute, collect). Here, on Linux, the wait between polls ends as soon as a message is renamed into
the queue folder (inotify, IN_MOVED_TO); `polling_interval` remains the longest wait, so a missed
event (or a system without inotify) costs at most what polling did.

Both Celery apps call use_whole_message_transport() first: from then on a filesystem:// broker URL in
the process means this transport (a broker_transport setting would also override a Redis URL).
"""

import contextlib
import ctypes
import ctypes.util
import os
import select
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "health_platform.filesystem_broker:Transport"


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4()}")  # matches no queue
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError:
            raise ChannelError(f"Cannot add file {name!r} to the broker folder") from None


_IN_MOVED_TO = 0x00000080
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC


class FolderWatch:
    """Waits until a file is renamed into a folder, or a timeout (Linux inotify through libc)."""

    def __init__(self, folder: str):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        descriptor = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)  # AttributeError where there is none
        if descriptor < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(descriptor, os.fsencode(folder), _IN_MOVED_TO) < 0:
            error = ctypes.get_errno()
            os.close(descriptor)
            raise OSError(error, f"cannot watch {folder}")
        self._descriptor = descriptor

    def wait(self, timeout: float) -> bool:
        """True if something arrived since the last wait (events are consumed), False on timeout."""
        readable, _, _ = select.select([self._descriptor], [], [], max(timeout, 0))
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._descriptor, 65536):
                pass
        return True

    def close(self) -> None:
        os.close(self._descriptor)


class Transport(filesystem.Transport):
    Channel = Channel
    _watch: FolderWatch | None = None
    _watch_tried = False

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's loop, with the sleep between empty polls cut short by a message's arrival."""
        watch = self._folder_watch()
        if watch is None:
            super().drain_events(connection, timeout=timeout)
            return
        start = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                waits = [self.polling_interval or 0.1]
                if timeout is not None:
                    remaining = timeout - (monotonic() - start)
                    if remaining <= 0:
                        raise TimeoutError() from None
                    waits.append(remaining)
                watch.wait(min(waits))

    def _folder_watch(self) -> FolderWatch | None:
        """Made before the first poll, so that a message arriving between a poll and the wait is seen."""
        if not self._watch_tried:
            self._watch_tried = True
            folder = self.client.transport_options.get("data_folder_in", "data_in")
            try:
                self._watch = FolderWatch(folder)
            except (OSError, AttributeError):  # no inotify here (or no folder yet): poll as kombu does
                self._watch = None
        return self._watch

    def close_connection(self, connection: Any) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch, self._watch_tried = None, False
        super().close_connection(connection)


def use_whole_message_transport() -> None:
    """Make filesystem:// URLs use this transport in this process."""
    TRANSPORT_ALIASES["filesystem"] = TRANSPORT
