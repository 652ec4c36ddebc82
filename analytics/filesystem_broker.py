"""kombu's filesystem transport, with messages that appear whole. Free of Django.

kombu (5.5) creates a message's file under its final name in the queue folder and then writes it: a
worker polling in between takes the empty file, fails to decode it (the worker dies with
JSONDecodeError) and the message is lost. Here a message is written under a name no queue matches
and renamed into place (os.replace, atomic within the folder), so a reader sees all of it or nothing.

Both Celery apps call use_whole_message_transport() first: from then on a filesystem:// broker URL in
the process means this transport (a broker_transport setting would also override a Redis URL).
"""

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "analytics.filesystem_broker:Transport"


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


class Transport(filesystem.Transport):
    Channel = Channel


def use_whole_message_transport() -> None:
    """Make filesystem:// URLs use this transport in this process."""
    TRANSPORT_ALIASES["filesystem"] = TRANSPORT
