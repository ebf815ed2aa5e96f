"""A run folder: ``run.db``, ``keys/`` (agent secret keys, 0600), ``broker/`` (accounts and
broker configuration, 0600), ``logs/``, and the scenario copy.

Everything secret lives outside ``run.db``: a leaked run file is not enough to act as anyone.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moltsim.domain.actions import HANDLE_PATTERN
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.engine.rules import Rules
from moltsim.engine.service import Engine
from moltsim.identity.credentials import (
    Credentials,
    credentials_path,
    load_credentials,
    write_credentials,
)
from moltsim.identity.signing import Signer
from moltsim.store.runfile import RunFile, RunFileError
from moltsim.wire.accounts import ACCOUNTS_FILE, Accounts

DB_NAME = "run.db"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def db(self) -> Path:
        return self.path / DB_NAME

    @property
    def keys(self) -> Path:
        return self.path / "keys"

    @property
    def broker(self) -> Path:
        return self.path / "broker"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @classmethod
    def locate(cls, run: str | Path) -> RunFolder:
        """The run folder of ``run`` (the folder itself, or the ``run.db`` inside it)."""
        path = Path(run)
        folder = cls(path.parent if path.name == DB_NAME or path.suffix == ".db" else path)
        if not folder.db.exists():
            raise RunFileError(f"no run file at {folder.db}")
        return folder

    @classmethod
    async def create(
        cls, path: str | Path, sim_id: str | None = None, rules: Rules | None = None
    ) -> RunFolder:
        """Make a new run folder with an empty run file and fresh broker accounts."""
        folder = cls(Path(path))
        if folder.db.exists():
            raise RunFileError(f"{folder.db} already exists; use --resume to continue that run")
        folder.path.mkdir(parents=True, exist_ok=True)
        # The run file and the logs hold DMs and every prompt: the folder is its owner's only.
        folder.path.chmod(0o700)
        folder.logs.mkdir(mode=0o700, exist_ok=True)
        folder.keys.mkdir(mode=0o700, exist_ok=True)
        sim = sim_id or secrets.token_hex(4)
        runfile = await RunFile.open(folder.db)
        try:
            await runfile.set_meta(sim_id=sim, rules=(rules or Rules()).model_dump_json())
        finally:
            await runfile.close()
        Accounts.create(sim).save(folder.broker)
        return folder

    def accounts(self) -> Accounts:
        if not (self.broker / ACCOUNTS_FILE).exists():
            raise RunFileError(
                f"{self.path} has no broker accounts ({self.broker / ACCOUNTS_FILE})"
            )
        return Accounts.load(self.broker)

    def credentials(self, handle: str) -> Credentials:
        return load_credentials(credentials_path(self.keys, handle))

    async def register(
        self,
        agents: Iterable[tuple[str, dict[str, Any]]],
        pool: str,
        now: float,
        rules: Rules | None = None,
    ) -> list[Credentials]:
        """Register agents (handle, profile) for ``pool``: keys to ``keys/``, public keys to the
        run file, topic rights to the pool's broker account. The engine must not be running."""
        accounts = self.accounts()
        agents = list(agents)
        created: list[Credentials] = []
        engine = await Engine.open(self.db, rules)
        try:
            self._check_new(engine, [handle for handle, _ in agents])
            batch: list[tuple[str, bytes, dict[str, Any]]] = []
            files: list[Path] = []
            try:
                for handle, profile in agents:
                    signer = Signer.generate()
                    files.append(write_credentials(self.keys, handle, accounts.sim, signer))
                    batch.append((handle, signer.public_key, {**profile, "pool": pool}))
                    created.append(Credentials(handle, signer, accounts.sim))
                await engine.register_agents(batch, now)
            except BaseException:
                for file in files:
                    file.unlink(missing_ok=True)
                created.clear()
                raise
        finally:
            await engine.close()
            # Whatever was registered gets its broker rights, even if a later agent failed.
            if created:
                accounts.add_pool(pool, [c.handle for c in created])
                accounts.save(self.broker)
        return created

    def _check_new(self, engine: Engine, handles: list[str]) -> None:
        """Refuse the whole registration up front if any handle cannot be registered."""
        seen: set[str] = set()
        for handle in handles:
            if not re.fullmatch(HANDLE_PATTERN, handle):
                raise Refusal(ErrorCode.INVALID, f"handle {handle!r} must match {HANDLE_PATTERN}")
            key = handle.lower()
            if key in seen or key in engine.forum.state.handles:
                raise Refusal(ErrorCode.DUPLICATE, f"handle {handle!r} is taken")
            if credentials_path(self.keys, handle).exists():
                raise Refusal(
                    ErrorCode.DUPLICATE,
                    f"a key file for {handle!r} already exists in {self.keys}",
                )
            seen.add(key)
