"""The client surfaces: one codec per API, between its wire shape and the gateway's front door.

::

    base.py         Codec, StreamEncoder, Parsed: what a surface is; read_object (the JSON body)
    chat.py         POST /v1/chat/completions (OpenAI Chat Completions): the codec
    chat_checks.py  its body checked: 400 with the field named
"""

from failover.server.surfaces.base import Codec, StreamEncoder
from failover.server.surfaces.chat import ChatCodec


def surface_codecs() -> tuple[Codec, ...]:
    """One codec per API the gateway serves (each is one ``POST`` path)."""
    return (ChatCodec(),)


__all__ = [
    "ChatCodec",
    "Codec",
    "StreamEncoder",
    "surface_codecs",
]
