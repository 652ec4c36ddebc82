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

A message a worker takes is held, not deleted: it is renamed into a folder of the taking process
(`inflight/<host>-<pid>-<start time>` beside the queue folder) and deleted when the worker acknowledges it
(the platform's tasks acknowledge late, after they ran). If the process dies first (killed, out of memory,
the machine's power), its messages stay there: any live worker of the host moves them back into the queue
(at its start, then every ORPHAN_SWEEP_SECONDS), in their first order, so the work a dead worker had reserved
is delivered again within seconds instead of being lost. A rejected message goes back into the queue the
same way, and so does everything a worker still holds when it shuts down warm.

The transport also runs in Celery's event loop (`implements.asynchronous`), as Redis does: the worker is
woken by inotify and by a timer, and its prefork pool is Celery's asynchronous one, which replaces a pool
process that dies, idle or busy. (With kombu's own filesystem transport Celery runs its synchronous loop
over billiard's shared queue: a pool child killed while idle can leave that queue's read lock held, and the
whole worker stops taking work.)

Both Celery apps call use_platform_transports() first: from then on a filesystem:// broker URL in the
process means this transport, and a redis:// one health_platform.redis_broker's (the same recovery of what
dead workers held, over Redis). A broker_transport setting would override every URL, hence the aliases.
"""

import contextlib
import ctypes
import ctypes.util
import os
import select
import socket
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

from health_platform.supervise import pid_alive

TRANSPORT = "health_platform.filesystem_broker:Transport"
INFLIGHT = "inflight"
ORPHAN_SWEEP_SECONDS = 5.0
DRAIN_LIMIT = 1000  # messages taken in one go from the event loop, at most (the prefetch window bounds it too)


def _process_start_time(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (/proc/<pid>/stat), None if there is none.

    With the pid it names one process: a pid the kernel hands out again belongs to a later start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after "pid (comm)"


def process_owner() -> str:
    """This process, as an in-flight folder name: host, pid and start time."""
    pid = os.getpid()
    return f"{socket.gethostname()}-{pid}-{_process_start_time(pid) or 0}"


def owner_alive(owner: str) -> bool:
    """Whether the process that owns an in-flight folder runs. Processes of other hosts count as alive: this host
    cannot tell (the filesystem broker serves one host)."""
    parts = owner.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True
    host, pid, started = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return True
    current = _process_start_time(pid)
    if current is None:
        # No /proc entry: gone (or, on a system without /proc, a live pid is taken as the owner).
        return pid_alive(pid) and not Path("/proc").is_dir()
    return current == started


def restore_orphans(queue_folder: str) -> int:
    """Move every message held by a dead process of this host back into the queue folder; return how many."""
    base = Path(queue_folder).parent / INFLIGHT
    restored = 0
    try:
        owners = list(base.iterdir())
    except FileNotFoundError:
        return 0
    for folder in owners:
        if not folder.is_dir() or owner_alive(folder.name):
            continue
        for held in sorted(folder.iterdir()):
            with contextlib.suppress(FileNotFoundError):  # another worker restored it first
                os.rename(held, Path(queue_folder) / held.name)
                restored += 1
        with contextlib.suppress(OSError):
            folder.rmdir()
    return restored


class Channel(filesystem.Channel):
    """Messages written whole, held by the taking process until acknowledged (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[str, str] = {}  # delivery tag -> the message's file in this process's in-flight folder
        self._held_folder: tuple[int, str] | None = None
        self._never_acknowledged: set[str] = set()  # queues consumed with no_ack

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._never_acknowledged.add(queue)
        else:
            self._never_acknowledged.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._release(message.delivery_tag)
        return message

    def _inflight_folder(self) -> str:
        """This process's in-flight folder, made on first use (and again after a fork: another process)."""
        if self._held_folder is None or self._held_folder[0] != os.getpid():
            folder = Path(self.data_folder_in).parent / INFLIGHT / process_owner()
            folder.mkdir(parents=True, exist_ok=True)
            self._held_folder = (os.getpid(), str(folder))
        return self._held_folder[1]

    def _get(self, queue: str) -> Any:
        """Take the oldest message of `queue`: renamed into this process's in-flight folder (atomic: of two
        workers polling at once, one gets it), read, and held there until acknowledged. A consumer that does
        not acknowledge (no_ack: Celery's remote control) gets it deleted at once, as kombu does."""
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if not name.endswith(suffix):
                continue
            held = os.path.join(self._inflight_folder(), name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), held)
            except FileNotFoundError:
                continue  # another worker took it
            try:
                with open(held, "rb") as file:
                    payload = loads(bytes_to_str(file.read()))
            except (OSError, ValueError):
                raise ChannelError(f"Cannot read file {name!r} from queue.") from None
            tag = payload.get("properties", {}).get("delivery_tag") if isinstance(payload, dict) else None
            if queue in self._never_acknowledged or not tag:
                os.remove(held)
            else:
                self._held[tag] = held
            return payload
        raise Empty()

    def _release(self, delivery_tag: Any) -> None:
        held = self._held.pop(delivery_tag, None)
        if held is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(held)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._release(delivery_tag)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)  # a requeued message is written back by _restore
        self._release(delivery_tag)

    def _restore(self, message: Any) -> None:
        """Put a held message back in its queue (a rejection with requeue, a warm shutdown) and let it go."""
        super()._restore(message)
        self._release(message.delivery_tag)

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

    @property
    def fileno(self) -> int:
        return self._descriptor

    def consume(self) -> None:
        """Read away the pending events (the descriptor is non-blocking)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._descriptor, 65536):
                pass

    def wait(self, timeout: float) -> bool:
        """True if something arrived since the last wait (events are consumed), False on timeout."""
        readable, _, _ = select.select([self._descriptor], [], [], max(timeout, 0))
        if not readable:
            return False
        self.consume()
        return True

    def close(self) -> None:
        os.close(self._descriptor)


class Transport(filesystem.Transport):
    Channel = Channel
    _watch: FolderWatch | None = None
    _watch_tried = False
    # Celery runs an asynchronous transport in its event loop, with its asynchronous prefork pool.
    implements = filesystem.Transport.implements.extend(asynchronous=True)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Deliver from Celery's event loop: when inotify says a message arrived, and every polling_interval
        (a missed event; room freed in the prefetch window by an acknowledgement). Messages held by dead
        processes are put back now and every ORPHAN_SWEEP_SECONDS."""
        self._restore_orphans()
        watch = self._folder_watch()
        if watch is not None:
            loop.add_reader(watch.fileno, self._on_arrival, connection, watch)
        loop.call_repeatedly(self.polling_interval or 0.1, self._deliver_ready, connection)
        loop.call_repeatedly(ORPHAN_SWEEP_SECONDS, self._restore_orphans)

    def _on_arrival(self, connection: Any, watch: FolderWatch) -> None:
        watch.consume()
        self._deliver_ready(connection)

    def _deliver_ready(self, connection: Any) -> None:
        """Deliver what is in the queues now, as far as the prefetch window allows, without waiting."""
        for _ in range(DRAIN_LIMIT):
            try:
                self.cycle.get(self._deliver, timeout=0)
            except Empty:
                return

    def _restore_orphans(self) -> None:
        folder = self.client.transport_options.get("data_folder_in")
        if folder:
            restore_orphans(folder)

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's loop, with the sleep between empty polls cut short by a message's arrival."""
        if not self._watch_tried:
            self._restore_orphans()
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


def use_platform_transports() -> None:
    """Make filesystem:// and redis:// URLs use the platform's transports in this process."""
    TRANSPORT_ALIASES["filesystem"] = TRANSPORT
    TRANSPORT_ALIASES["redis"] = "health_platform.redis_broker:Transport"
