"""A codec whose messages are not bytes: JSON values, one per line.

The README's "Writing a codec" shows this module's code as it is (a test
holds the two together); the typed-message tests drive it through every
API.
"""

from __future__ import annotations

import json

import attrs

import aiosock
from aiosock import Buffer, Encoded, LocalProtocolError, RemoteProtocolError

# What JSON holds; json.loads() returns one (typed Any).
Json = dict[str, "Json"] | list["Json"] | str | int | float | bool | None


@attrs.frozen
class JsonLines(aiosock.Codec[Json]):
    """One JSON value per line, at most ``max_length`` bytes each."""

    max_length: int = 64 * 1024

    def decoder(self) -> JsonLinesDecoder:
        return JsonLinesDecoder(aiosock.Lines(max_length=self.max_length))

    def encode(self, message: Json) -> Encoded:
        # Compact JSON never holds a raw newline: the line is the frame.
        line = json.dumps(message, separators=(",", ":")).encode()
        return aiosock.Lines(max_length=self.max_length).encode(line)


class JsonLinesDecoder:
    """Lines in, values out: the framing is the Lines decoder's."""

    def __init__(self, lines: aiosock.Lines) -> None:
        self._lines = lines.decoder()  # oversize lines fail there, unbuffered
        self._failure: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        return self._lines.buffered

    def feed(self, data: Buffer) -> list[Json]:
        if self._failure is not None:
            raise LocalProtocolError(f"decoder failed before: {self._failure}")
        fault = None
        try:
            lines = self._lines.feed(data)
        except RemoteProtocolError as exc:  # a line too long: after these
            lines, exc.messages, fault = exc.messages, [], exc
        values: list[Json] = []
        for line in lines:
            try:
                values.append(json.loads(line))
            except ValueError as exc:
                fault = RemoteProtocolError(f"not JSON: {line[:40]!r}")
                fault.__cause__ = exc
                break
        if fault is not None:
            # The values before the fault are delivered, then the error.
            fault.messages = values
            self._failure = fault
            raise fault
        return values

    def eof(self) -> None:
        self._lines.eof()
