"""Scenario files and the run supervisor."""
