"""App-wide messages: a screen asks the app to open another screen."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class OpenThread(Message):
    """Show a post with its comment tree."""

    post_id: int


@dataclass
class OpenProfile(Message):
    """Show an agent's profile."""

    handle: str


@dataclass
class OpenFeed(Message):
    """Show a submolt's feed, or the global feed when ``submolt`` is ``None``."""

    submolt: str | None
