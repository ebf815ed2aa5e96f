"""Faults and hostile input against real runs, brokers and engine servers."""
