"""A post and its nested comment tree, with scores and authors."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static, Tree
from textual.widgets.tree import TreeNode

from moltsim.domain.actions import CommentSort
from moltsim.domain.entities import CommentView, PostView, ThreadView
from moltsim.store import queries
from moltsim.tui.format import age, one_line
from moltsim.tui.messages import OpenFeed, OpenProfile
from moltsim.tui.pulse import Pulse
from moltsim.tui.reads import comment_scores, new_since, sim_now
from moltsim.tui.screens.base import LiveScreen

COMMENT_ORDERS: tuple[CommentSort, ...] = ("best", "top", "new", "controversial")
MAX_COMMENTS = 500
LABEL_WIDTH = 96


@dataclass(frozen=True, slots=True)
class ThreadNews:
    new_comments: int
    scores: dict[int, tuple[int, int, int]]
    """Comment id to (score, ups, downs), for the comments on screen."""
    post: PostView | None


@dataclass(frozen=True, slots=True)
class LoadedThread:
    view: ThreadView | None
    max_comment_id: int
    now: float | None


class ThreadScreen(LiveScreen):
    """The post on top, its comments as a tree below, the highlighted comment in full."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "expand_chain", "Expand all", id="thread.expand", tooltip="unfold the chain"),
        Binding("a", "author", "Author", id="thread.author", tooltip="the author's profile"),
        Binding("m", "submolt", "Submolt", id="thread.submolt", tooltip="the post's submolt"),
        Binding("o", "order", "Order", id="thread.order", tooltip="best, top, new, controversial"),
        Binding("r", "show_new", "Show new", id="thread.reload", tooltip="read the thread again"),
    ]
    AUTO_FOCUS = "#comments"

    def __init__(self, post_id: int) -> None:
        super().__init__()
        self.post_id = post_id
        self.order: CommentSort = "best"
        self.thread: ThreadView | None = None
        self.max_comment_id = 0
        self.new_comments = 0
        self.now: float | None = None
        self._comment_nodes: dict[int, TreeNode[CommentView | None]] = {}
        self._seen_action_id = 0

    def compose(self) -> ComposeResult:
        yield self.header()
        with VerticalScroll(id="post"):
            yield Static(Text(f"post #{self.post_id}", style="dim"), id="post-head")
            yield Static("", id="post-body")
        yield Static("", id="new-banner", classes="banner")
        tree: Tree[CommentView | None] = Tree("comments", id="comments")
        tree.show_root = False
        tree.auto_expand = False
        yield tree
        yield Static("", id="comment-detail")
        yield Footer()

    @property
    def comment_tree(self) -> Tree[CommentView | None]:
        return self.query_one("#comments", Tree)

    def load(self) -> None:
        post_id, order = self.post_id, self.order

        def read(conn: sqlite3.Connection) -> LoadedThread:
            view = queries.thread(conn, post_id, sort=order, limit=MAX_COMMENTS)
            (max_id,) = conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM comments WHERE post_id = ?", (post_id,)
            ).fetchone()
            return LoadedThread(view, max_id, sim_now(conn))

        self.fetcher.fetch("thread", read, self._show)

    def _now(self) -> float | None:
        return self.now

    def _show(self, loaded: LoadedThread) -> None:
        view = loaded.view
        if view is None:
            self.query_one("#post-head", Static).update(
                Text(f"There is no post #{self.post_id} in this run.", style="bold red")
            )
            return
        self.thread = view
        self.now = loaded.now
        self.max_comment_id = loaded.max_comment_id
        self.new_comments = 0
        self._banner()
        self.query_one("#post-head", Static).update(self._head(view))
        body = view.post.body + (f"\n{view.post.url}" if view.post.url else "")
        self.query_one("#post-body", Static).update(Text(body))
        tree = self.comment_tree
        self._seen_action_id = self.watch_app.pulse.max_action_id if self.watch_app.pulse else 0
        with self.app.batch_update():
            tree.clear()
            self._comment_nodes.clear()
            tree.root.set_label(f"{view.total_comments} comments")
            for comment in view.comments:
                self._add(tree.root, comment)
            tree.root.expand()
        if view.comments:
            tree.move_cursor(tree.root.children[0])
        if not view.comments:
            self.query_one("#comment-detail", Static).update(Text("No comments yet.", style="dim"))

    def _head(self, view: ThreadView) -> Text:
        post: PostView = view.post
        text = Text(post.title, style="bold")
        text.append("\n")
        text.append(f"m/{post.submolt}", style="cyan")
        text.append(f" · @{post.author}" if post.author else " · [deleted]")
        text.append(f" · {age(post.created_at, self._now())} ago")
        text.append(f" · score {post.score} (+{post.ups} -{post.downs})")
        shown = (
            f"{view.shown_comments} of {view.total_comments}"
            if view.shown_comments < view.total_comments
            else f"{view.total_comments}"
        )
        text.append(f" · {shown} comments · order {self.order}")
        return text

    def _label(self, comment: CommentView) -> Text:
        author = f"@{comment.author}" if comment.author else "[deleted]"
        text = Text()
        style = "green" if comment.score > 0 else "red" if comment.score < 0 else "dim"
        text.append(f"{comment.score:+d} ", style=style)
        text.append(author, style="bold")
        text.append(f" · {age(comment.created_at, self._now())}", style="dim")
        if comment.replies:
            text.append(
                f" · {len(comment.replies)} repl{'y' if len(comment.replies) == 1 else 'ies'}",
                style="dim",
            )
        text.append("  " + one_line(comment.body, LABEL_WIDTH))
        return text

    def _add(self, parent: TreeNode[CommentView | None], comment: CommentView) -> None:
        node = parent.add(self._label(comment), data=comment, allow_expand=bool(comment.replies))
        self._comment_nodes[comment.id] = node
        for reply in comment.replies:
            self._add(node, reply)

    def _banner(self) -> None:
        banner = self.query_one("#new-banner", Static)
        if self.new_comments:
            noun = "comment" if self.new_comments == 1 else "comments"
            banner.update(f"{self.new_comments} new {noun} · press r to show")
            banner.display = True
        else:
            banner.display = False

    def pulse_arrived(self, pulse: Pulse) -> None:
        """New comments are counted; votes change the scores where they are."""
        if self.thread is None or pulse.max_action_id <= self._seen_action_id:
            return
        self._seen_action_id = pulse.max_action_id
        post_id, after = self.post_id, self.max_comment_id

        def read(conn: sqlite3.Connection) -> ThreadNews:
            return ThreadNews(
                new_comments=new_since(conn, "comments", after, post_id=post_id),
                scores=comment_scores(conn, post_id, after),
                post=queries.post(conn, post_id),
            )

        self.fetcher.fetch("news", read, self._news)

    def _news(self, news: ThreadNews) -> None:
        self.new_comments = news.new_comments
        self._banner()
        with self.app.batch_update():
            for comment_id, (score, ups, downs) in news.scores.items():
                node = self._comment_nodes.get(comment_id)
                if node is None or node.data is None:
                    continue
                old = node.data
                if (old.score, old.ups, old.downs) == (score, ups, downs):
                    continue
                node.data = old.model_copy(update={"score": score, "ups": ups, "downs": downs})
                node.set_label(self._label(node.data))
            if self.thread is not None and news.post is not None:
                self.thread = self.thread.model_copy(update={"post": news.post})
                self.query_one("#post-head", Static).update(self._head(self.thread))

    # --- actions --------------------------------------------------------------------------

    def _highlighted(self) -> CommentView | None:
        node = self.comment_tree.cursor_node
        return None if node is None else node.data

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[CommentView | None]) -> None:
        comment = event.node.data
        detail = self.query_one("#comment-detail", Static)
        if comment is None:
            detail.update("")
            return
        text = Text()
        text.append(f"@{comment.author}" if comment.author else "[deleted]", style="bold")
        text.append(
            f" · comment #{comment.id} · score {comment.score} (+{comment.ups} -{comment.downs})"
            f" · {age(comment.created_at, self._now())} ago\n",
            style="dim",
        )
        text.append(comment.body)
        detail.update(text)

    def action_expand_chain(self) -> None:
        node = self.comment_tree.cursor_node or self.comment_tree.root
        node.expand_all()

    def action_author(self) -> None:
        comment = self._highlighted()
        author = comment.author if comment is not None else None
        if author is None and comment is None and self.thread is not None:
            author = self.thread.post.author
        if author:
            self.post_message(OpenProfile(author))

    def action_submolt(self) -> None:
        if self.thread is not None:
            self.post_message(OpenFeed(self.thread.post.submolt))

    def action_order(self) -> None:
        self.order = COMMENT_ORDERS[(COMMENT_ORDERS.index(self.order) + 1) % len(COMMENT_ORDERS)]
        self.load()

    def action_show_new(self) -> None:
        self.load()
