"""Agents: personas, the skill, memory, brains, the heartbeat runtime and pools."""
