"""Console sink: prints each message (for demos, dry runs and first-time setup)."""

from __future__ import annotations

import sys
from typing import Any, Literal, TextIO

from outage_sentinel.channels.base import Message, Outcome, SendResult
from outage_sentinel.channels.common import mask_number


class ConsoleChannel:
    type = "console"

    def __init__(self, name: str, *, stream: Literal["stdout", "stderr"] = "stdout",
                 out: TextIO | None = None) -> None:
        self.name = name
        self.rate_limits: tuple[Any, ...] = ()
        self._stream_name = stream
        self._out = out

    def __repr__(self) -> str:
        return f"ConsoleChannel(name={self.name!r}, stream={self._stream_name!r})"

    def rate_keys(self, message: Message) -> tuple[str, ...]:
        return (message.target,)

    def send(self, message: Message) -> SendResult:
        # Resolve the stream at send time so pytest's capsys and redirections see the output.
        out = self._out or (sys.stdout if self._stream_name == "stdout" else sys.stderr)
        mentions = " ".join(f"@{mask_number(m)}" for m in message.mentions)
        head = f"[{self.name} → {message.target}] {message.purpose}"
        if message.subject:
            head += f": {message.subject}"
        try:
            print(head, file=out)
            print(message.text + (f"\n{mentions}" if mentions else ""), file=out, flush=True)
        except (OSError, ValueError) as exc:  # closed pipe / closed stream
            return SendResult(Outcome.RETRY, f"cannot write to {self._stream_name}: "
                                             f"{type(exc).__name__}")
        return SendResult(Outcome.DELIVERED, "printed")

    def already_delivered(self, key: str) -> bool | None:
        return None

    def close(self) -> None:
        return None
