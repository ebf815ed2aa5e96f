"""Real parts for the local model tests: the 0.5B model in the user's cache (fetched from PyPI
once per machine), and tiny fake models published as real wheels in a local ``--find-links``
directory, so that the download path runs the real ``pip``.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from moltsim.llm.local import MODELS, LocalModel, ensure_model


@pytest.fixture(scope="session")
def small_model() -> Path:
    """The 0.5B model's GGUF file, in the real user cache: downloaded once per machine."""
    return ensure_model(MODELS["qwen2.5-0.5b"])


@dataclass
class FakeModel:
    """A tiny "model" split into wheels in ``index`` (a ``--find-links`` directory)."""

    model: LocalModel
    index: Path
    parts: dict[int, bytes]
    """Each part's bytes, by part number."""

    @property
    def content(self) -> bytes:
        return b"".join(self.parts[n] for n in sorted(self.parts))

    def wheel(self, n: int) -> Path:
        return self.index / f"{self.model.module(n)}-{self.model.version}-py3-none-any.whl"

    def with_sha256(self, digest: str) -> LocalModel:
        return replace(self.model, sha256=digest)


def build_wheel(path: Path, module: str, dist: str, version: str, member: str, data: bytes) -> None:
    """A minimal valid wheel holding ``member``, as the published model parts are."""
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        member: data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            z.writestr(name, content)


MakeFake = Callable[..., FakeModel]


@pytest.fixture
def make_fake(tmp_path: Path) -> MakeFake:
    """``make_fake(parts=3)``: a fake model whose part ``n`` is distinct bytes, published as
    wheels in a fresh find-links directory, with a catalogue entry whose digest is right."""
    counter = iter(range(1000))

    def make(parts: int = 3, part_size: int = 1000) -> FakeModel:
        k = next(counter)
        name = f"fake-{k}"
        index = tmp_path / f"index-{k}"
        index.mkdir()
        data = {n: bytes([n]) * part_size + f"part {n}".encode() for n in range(1, parts + 1)}
        joined = b"".join(data[n] for n in range(1, parts + 1))
        model = LocalModel(
            name=name,
            description="a test model",
            package=f"moltsim-test-fake{k}-part{{n}}",
            parts=parts,
            version="1.0.0",
            size=len(joined),
            sha256=hashlib.sha256(joined).hexdigest(),
        )
        fake = FakeModel(model, index, data)
        for n in model.part_numbers():
            build_wheel(
                fake.wheel(n), model.module(n), model.package_name(n), model.version,
                model.member(n), data[n],
            )  # fmt: skip
        return fake

    return make
