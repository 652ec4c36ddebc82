"""kombu's Redis transport, with the messages a dead worker holds delivered again within seconds. Free of Django.

kombu keeps every message a worker took but has not acknowledged in Redis (the `unacked` hash) and puts it
back in its queue once it has been held longer than the visibility timeout (an hour by default): a worker
killed whole (its main process, not only a pool process) leaves its reserved and running tasks waiting that
long. Shortening the timeout would deliver long tasks again while they still run. Here each process records
which messages it holds (a Redis set per process: host, pid and start time, as the filesystem broker names
its in-flight folders); a live worker of the same host puts back the messages of a process that no longer
runs, at its start and every ORPHAN_SWEEP_SECONDS. Messages held by another host's processes are left to the
visibility timeout (this host cannot tell whether they run).
"""

from typing import Any

from kombu.transport import redis

from health_platform.filesystem_broker import ORPHAN_SWEEP_SECONDS, owner_alive, process_owner

TRANSPORT = "health_platform.redis_broker:Transport"
OWNERS_KEY = "health_platform.held.owners"


def held_key(owner: str) -> str:
    return f"health_platform.held.{owner}"


class QoS(redis.QoS):
    """kombu's acknowledgement emulation, plus the set of delivery tags this process holds."""

    def append(self, message: Any, delivery_tag: str) -> None:
        super().append(message, delivery_tag)
        owner = process_owner()
        with self.channel.conn_or_acquire() as client:
            client.pipeline().sadd(OWNERS_KEY, owner).sadd(held_key(owner), delivery_tag).execute()

    def _let_go(self, delivery_tag: str) -> None:
        with self.channel.conn_or_acquire() as client:
            client.srem(held_key(process_owner()), delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        super().ack(delivery_tag)
        self._let_go(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().reject(delivery_tag, requeue=requeue)
        self._let_go(delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        tags = list(self._delivered)
        super().restore_unacked(client=client)
        for tag in tags:
            self._let_go(tag)


class Channel(redis.Channel):
    QoS = QoS

    def restore_orphans(self) -> int:
        """Put back the messages held by the dead processes of this host; return how many."""
        restored = 0
        with self.conn_or_acquire() as client:
            for raw_owner in client.smembers(OWNERS_KEY):
                owner = raw_owner.decode() if isinstance(raw_owner, bytes) else str(raw_owner)
                if owner_alive(owner):
                    continue
                for tag in client.smembers(held_key(owner)):
                    self.qos.restore_by_tag(tag.decode() if isinstance(tag, bytes) else tag, client=client)
                    restored += 1
                client.pipeline().delete(held_key(owner)).srem(OWNERS_KEY, raw_owner).execute()
        return restored


class Transport(redis.Transport):
    Channel = Channel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        self._restore_orphans(connection)
        loop.call_repeatedly(ORPHAN_SWEEP_SECONDS, self._restore_orphans, connection)

    def _restore_orphans(self, connection: Any) -> None:
        for channel in list(self.channels):
            if isinstance(channel, Channel):
                channel.restore_orphans()
                return
