"""An agent's profile: persona summary, karma, recent posts and comments, followers."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from moltsim.domain.entities import ProfileView
from moltsim.store import queries
from moltsim.tui.format import age, count, one_line, sim_clock
from moltsim.tui.messages import OpenThread
from moltsim.tui.reads import AgentExtras, agent_extras, sim_now
from moltsim.tui.screens.base import LiveScreen

RECENT = 20


@dataclass(frozen=True, slots=True)
class LoadedProfile:
    profile: ProfileView | None
    extras: AgentExtras | None
    now: float | None


class ProfileScreen(LiveScreen):
    """Who an agent is and what it wrote lately; enter opens the thread of a row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_thread", "Open", id="profile.open", tooltip="open the thread"),
        Binding("r", "reload", "Reload", id="profile.reload", tooltip="read the profile again"),
    ]

    def __init__(self, handle: str) -> None:
        super().__init__()
        self.handle = handle
        self.profile: ProfileView | None = None

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Static(Text(f"@{self.handle}", style="bold"), id="profile-head")
        yield Static("Recent posts", classes="section")
        posts: DataTable[str | Text] = DataTable(id="profile-posts", cursor_type="row")
        posts.add_columns("score", "comments", "title", "submolt", "age")
        yield posts
        yield Static("Recent comments", classes="section")
        comments: DataTable[str | Text] = DataTable(id="profile-comments", cursor_type="row")
        comments.add_columns("score", "comment", "on post", "age")
        yield comments
        yield Footer()

    def load(self) -> None:
        handle = self.handle

        def read(conn: sqlite3.Connection) -> LoadedProfile:
            found = queries.profile(conn, handle, recent=RECENT)
            extras = None if found is None else agent_extras(conn, found.agent.id)
            return LoadedProfile(found, extras, sim_now(conn))

        self.fetcher.fetch("profile", read, self._show)

    def _show(self, loaded: LoadedProfile) -> None:
        head = self.query_one("#profile-head", Static)
        found, extras = loaded.profile, loaded.extras
        if found is None or extras is None:
            head.update(Text(f"There is no agent @{self.handle} in this run.", style="bold red"))
            return
        self.profile = found
        now = loaded.now
        who = found.agent
        text = Text()
        text.append(who.display_name, style="bold")
        text.append(f"  @{who.handle}", style="cyan")
        text.append(f"  · joined {sim_clock(who.created_at)}\n", style="dim")
        text.append(f"karma {who.karma:,}", style="bold green")
        text.append(
            f" · {who.post_count:,} posts · {who.comment_count:,} comments"
            f" · {who.follower_count:,} followers · follows {who.following_count:,}\n"
        )
        if who.bio:
            text.append(one_line(who.bio, 240) + "\n")
        if extras.persona:
            text.append("persona  ", style="dim")
            text.append(one_line(extras.persona, 220) + "\n")
        if found.moderates:
            text.append("moderates  ", style="dim")
            text.append(", ".join(f"m/{s}" for s in found.moderates) + "\n")
        if found.subscriptions:
            text.append("member of  ", style="dim")
            text.append(one_line(", ".join(f"m/{s}" for s in found.subscriptions), 200) + "\n")
        text.append("followers  ", style="dim")
        text.append(
            one_line(", ".join(f"@{h}" for h in extras.followers), 200) if extras.followers
            else "none yet"
        )  # fmt: skip
        self.query_one("#profile-head", Static).update(text)
        posts = self.query_one("#profile-posts", DataTable)
        comments = self.query_one("#profile-comments", DataTable)
        with self.app.batch_update():
            posts.clear()
            for post in found.recent_posts:
                posts.add_row(
                    Text(count(post.score), justify="right"), Text(count(post.comment_count)),
                    Text(one_line(post.title, 70)), Text(post.submolt),
                    Text(age(post.created_at, now)),
                    key=str(post.id),
                )  # fmt: skip
            comments.clear()
            for comment in found.recent_comments:
                comments.add_row(
                    Text(count(comment.score), justify="right"), Text(one_line(comment.body, 80)),
                    Text(f"#{comment.post_id}"), Text(age(comment.created_at, now)),
                    key=f"{comment.post_id}:{comment.id}",
                )  # fmt: skip

    def _post_id(self, key: str | None) -> int | None:
        return None if key is None else int(key.split(":")[0])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if (post_id := self._post_id(event.row_key.value)) is not None:
            self.post_message(OpenThread(post_id))

    def action_open_thread(self) -> None:
        focused = self.focused
        if isinstance(focused, DataTable) and focused.row_count:
            key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key
            if (post_id := self._post_id(key.value)) is not None:
                self.post_message(OpenThread(post_id))

    def action_reload(self) -> None:
        self.load()
