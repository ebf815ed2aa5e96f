"""Widgets of the watcher."""
