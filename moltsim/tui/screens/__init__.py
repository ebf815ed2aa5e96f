"""Screens of the watcher."""
