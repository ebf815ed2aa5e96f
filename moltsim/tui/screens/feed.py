"""A feed, global or of one submolt, sorted hot, new, top or rising."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static, Tab, Tabs

from moltsim.domain.actions import FeedSort
from moltsim.domain.entities import PostView, SubmoltView
from moltsim.store import queries
from moltsim.tui.format import age, count, one_line
from moltsim.tui.messages import OpenFeed, OpenProfile, OpenThread
from moltsim.tui.pulse import Pulse
from moltsim.tui.reads import new_since, post_counters, sim_now, submolt_id
from moltsim.tui.screens.base import LiveScreen

SORTS: tuple[FeedSort, ...] = ("hot", "new", "top", "rising")
PAGE = 100
"""Posts read per page; the next page is read when the cursor nears the end."""
TITLE_WIDTH = 60
MAX_RELOAD = 1_000
"""At most this many posts are read again when the user asks for the new ones."""


@dataclass(frozen=True, slots=True)
class FeedPage:
    posts: list[PostView]
    offset: int
    limit: int
    max_post_id: int
    submolt: SubmoltView | None
    submolt_id: int | None
    now: float | None


@dataclass(frozen=True, slots=True)
class FeedNews:
    new_posts: int
    counters: dict[int, tuple[int, int]]


class FeedScreen(LiveScreen):
    """Posts in one order; new posts are counted ("N new") rather than pushed in."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_thread", "Open", id="feed.open", tooltip="open the post's thread"),
        Binding("1", "sort('hot')", "Hot", id="feed.hot", tooltip="sort by hot"),
        Binding("2", "sort('new')", "New", id="feed.new", tooltip="sort by new"),
        Binding("3", "sort('top')", "Top", id="feed.top", tooltip="sort by score"),
        Binding("4", "sort('rising')", "Rising", id="feed.rising", tooltip="sort by momentum"),
        Binding("a", "author", "Author", id="feed.author", tooltip="the post author's profile"),
        Binding("m", "submolt", "Submolt", id="feed.submolt", tooltip="the post's submolt"),
        Binding("r", "show_new", "Show new", id="feed.reload", tooltip="read the feed again"),
    ]
    AUTO_FOCUS = "#posts"

    def __init__(self, submolt: str | None = None, sort: FeedSort = "hot") -> None:
        super().__init__()
        self.submolt = submolt
        self.sort: FeedSort = sort
        self.posts: dict[int, PostView] = {}
        self.max_post_id = 0
        self.new_posts = 0
        self.exhausted = False
        self.loaded_once = False
        self._submolt_id: int | None = None
        self._now: float | None = None
        self._keep_cursor_on: int | None = None
        self._stay_on_top = False
        self._seen_action_id = -1

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Static(self._title(None), id="feed-title", classes="screen-title")
        yield Tabs(
            *(Tab(s.capitalize(), id=f"sort-{s}") for s in SORTS), active=f"sort-{self.sort}"
        )
        yield Static("", id="new-banner", classes="banner")
        table: DataTable[str | Text] = DataTable(id="posts", cursor_type="row", zebra_stripes=True)
        table.add_column("score", key="score")
        table.add_column("comments", key="comments")
        table.add_column("age", key="age")
        table.add_column("title", key="title")
        table.add_column("submolt", key="submolt")
        table.add_column("author", key="author")
        yield table
        yield Static("", id="empty", classes="empty")
        yield Footer()

    def _title(self, sub: SubmoltView | None) -> Text:
        if self.submolt is None:
            return Text("Global feed", style="bold")
        text = Text(f"m/{self.submolt}", style="bold")
        if sub is not None:
            if sub.title:
                text.append(f" · {sub.title}")
            text.append(f" · {count(sub.subscriber_count)} members, {count(sub.post_count)} posts")
            if sub.owner:
                text.append(f" · owner @{sub.owner}")
            if sub.description:
                text.append(f"\n{one_line(sub.description, 200)}", style="dim")
        return text

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#posts", DataTable)

    # --- loading --------------------------------------------------------------------------

    def load(self, offset: int = 0, limit: int = PAGE) -> None:
        sort, name = self.sort, self.submolt

        def read(conn: sqlite3.Connection) -> FeedPage:
            now = sim_now(conn)
            sub = None if name is None else queries.submolt(conn, name)
            posts = queries.feed(
                conn, sort=sort, submolt=name, limit=limit, offset=offset, now=now or 0.0
            )
            (max_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM posts").fetchone()
            sub_id = None if name is None else submolt_id(conn, name)
            return FeedPage(posts, offset, limit, max_id, sub, sub_id, now)

        self.fetcher.fetch("feed", read, self._show)

    def _show(self, page: FeedPage) -> None:
        table = self.table
        self._now = page.now
        self._submolt_id = page.submolt_id
        if page.offset == 0:
            keep = self._keep_cursor_on
            if keep is None and not self._stay_on_top and self.posts:
                keep = self._highlighted_id()
            self._stay_on_top = False
            self.query_one("#feed-title", Static).update(self._title(page.submolt))
            table.clear()
            self.posts.clear()
            self.max_post_id = page.max_post_id
            self.new_posts = 0
            self._banner()
        else:
            keep = None
        with self.app.batch_update():
            for post in page.posts:
                if post.id in self.posts:
                    continue
                self.posts[post.id] = post
                table.add_row(*self._cells(post), key=str(post.id))
        self.exhausted = len(page.posts) < page.limit
        self.loaded_once = True
        if keep is not None and str(keep) in table.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))
        self._keep_cursor_on = None
        self._empty_state()

    def _cells(self, post: PostView) -> tuple[Text, Text, Text, Text, Text, Text]:
        score = Text(count(post.score), justify="right", style="green" if post.score > 0 else "")
        title = Text(one_line(post.title, TITLE_WIDTH))
        if post.pinned:
            title = Text.assemble(("pinned ", "bold yellow"), title)
        return (
            score,
            Text(count(post.comment_count)),
            Text(age(post.created_at, self._now)),
            title,
            Text(post.submolt),
            Text(f"@{post.author}" if post.author else "[deleted]"),
        )

    def _empty_state(self) -> None:
        empty = self.query_one("#empty", Static)
        if self.posts:
            empty.display = False
            self.table.display = True
            return
        where = "this run" if self.submolt is None else f"m/{self.submolt}"
        if self.sort == "rising" and self.max_post_id:
            message = f"Nothing rising in {where} right now: no post of the last hours."
        else:
            message = f"No posts yet in {where}. New posts appear here as agents write them."
        empty.update(message)
        empty.display = True
        self.table.display = False

    def _banner(self) -> None:
        banner = self.query_one("#new-banner", Static)
        if self.new_posts:
            noun = "post" if self.new_posts == 1 else "posts"
            banner.update(f"{self.new_posts} new {noun} · press r to show")
            banner.display = True
        else:
            banner.display = False

    # --- following the run ----------------------------------------------------------------

    def pulse_arrived(self, pulse: Pulse) -> None:
        if not self.loaded_once or pulse.max_action_id == self._seen_action_id:
            return
        self._seen_action_id = pulse.max_action_id
        after, sub_id = self.max_post_id, self._submolt_id
        ids = self._visible_ids()

        def read(conn: sqlite3.Connection) -> FeedNews:
            return FeedNews(
                new_posts=new_since(conn, "posts", after, submolt_id=sub_id),
                counters=post_counters(conn, ids),
            )

        self._now = pulse.sim_time
        self.fetcher.fetch("news", read, self._news)

    def _visible_ids(self) -> list[int]:
        """Ids of the rows on screen (and a few around them), whose counters are refreshed."""
        table = self.table
        first = int(table.scroll_y)
        keys = list(table.rows)[max(first - 5, 0) : first + table.size.height + 5]
        return [int(k.value) for k in keys if k.value is not None]

    def _news(self, news: FeedNews) -> None:
        table = self.table
        with self.app.batch_update():
            for post_id, (score, comments) in news.counters.items():
                post = self.posts.get(post_id)
                if post is None or (post.score, post.comment_count) == (score, comments):
                    continue
                post = post.model_copy(update={"score": score, "comment_count": comments})
                self.posts[post_id] = post
                cells = self._cells(post)
                table.update_cell(str(post_id), "score", cells[0])
                table.update_cell(str(post_id), "comments", cells[1])
        self.new_posts = news.new_posts
        if self.new_posts and self._follows_head():
            self._stay_on_top = True
            self.load()
            return
        self._banner()

    def _follows_head(self) -> bool:
        """Whether new posts may come in without moving what the user reads: the feed is
        empty, or it is the newest-first feed and the cursor is on its first row."""
        if not self.posts:
            return True
        return self.sort == "new" and self.table.cursor_row == 0 and self.table.scroll_y == 0

    # --- actions --------------------------------------------------------------------------

    def _highlighted_id(self) -> int | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return None if key.value is None else int(key.value)

    def _highlighted(self) -> PostView | None:
        post_id = self._highlighted_id()
        return None if post_id is None else self.posts.get(post_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(OpenThread(int(event.row_key.value)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = self.table
        near_end = event.cursor_row >= table.row_count - 10
        if near_end and not self.exhausted and self.loaded_once and not self.fetcher.busy():
            self.load(offset=len(self.posts))

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        sort = (event.tab.id or "").removeprefix("sort-")
        if sort in SORTS and sort != self.sort:
            self.action_sort(sort)

    def action_sort(self, sort: str) -> None:
        if sort not in SORTS:
            return
        self.sort = SORTS[SORTS.index(sort)]
        self.query_one(Tabs).active = f"sort-{sort}"
        self._keep_cursor_on = None
        self.posts.clear()
        self.table.clear()
        self.loaded_once = False
        self.load()

    def action_open_thread(self) -> None:
        if (post := self._highlighted()) is not None:
            self.post_message(OpenThread(post.id))

    def action_author(self) -> None:
        if (post := self._highlighted()) is not None and post.author:
            self.post_message(OpenProfile(post.author))

    def action_submolt(self) -> None:
        if (post := self._highlighted()) is not None and post.submolt != self.submolt:
            self.post_message(OpenFeed(post.submolt))

    def action_show_new(self) -> None:
        """Read the feed again, as far down as the user had read (so the cursor's post is
        still there), keeping the cursor on that post."""
        self._keep_cursor_on = self._highlighted_id()
        self.load(limit=min(max(PAGE, len(self.posts)), MAX_RELOAD))
