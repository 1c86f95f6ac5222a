"""What can go wrong on a live stream, each kind with its stable `code`.

They travel as `error` events on the socket (protocol.error_event); `fatal` ones
close the stream after the event (with StreamError's close code, 1008), the others only
refuse the one client event.
"""

from __future__ import annotations

from server.errors import StreamError


class InvalidEvent(StreamError):
    """Not JSON, not an object, an unknown `type`, or a field of the wrong kind."""

    code = "invalid_event"


class InvalidAudioChunk(StreamError):
    """`audio` is not base64 of whole 16-bit little-endian samples."""

    code = "invalid_audio_chunk"


class MessageTooLarge(StreamError):
    """A client message past HRA_STREAMING__MAX_MESSAGE_BYTES (the message is dropped)."""

    code = "message_too_large"


class StreamIdle(StreamError):
    """Nothing received for HRA_STREAMING__IDLE_TIMEOUT_S."""

    code = "stream_idle_timeout"
    fatal = True


class SlowConsumer(StreamError):
    """The client did not read an event within HRA_STREAMING__SEND_TIMEOUT_S."""

    code = "slow_consumer"
    fatal = True


class StreamTooFast(StreamError):
    """Audio ran more than HRA_STREAMING__MAX_AHEAD_S ahead of the wall clock."""

    code = "stream_too_fast"
    fatal = True


class StreamOverloaded(StreamError):
    """More ended utterances waiting for their finals than HRA_STREAMING__MAX_PENDING_FINALS."""

    code = "stream_overloaded"
    fatal = True
