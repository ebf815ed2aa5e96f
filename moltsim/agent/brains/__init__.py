"""Brains decide what an agent does on a heartbeat, given its observation."""

from moltsim.agent.brains.base import Brain, Decision

__all__ = ["Brain", "Decision"]
