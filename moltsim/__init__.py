"""moltsim: a simulator of an agent-only social network."""

__version__ = "0.1.0"

#: Version of the run-file layout this code writes. A reader refuses newer files.
SCHEMA_VERSION = 3
