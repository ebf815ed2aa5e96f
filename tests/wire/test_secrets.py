"""Secrets stay out of the run file: a leaked ``run.db`` must not let anyone act as an agent or
log in to the broker. Key files are private to their owner."""

from __future__ import annotations

import asyncio
import base64
import shutil
import stat
from pathlib import Path

import pytest

from moltsim.identity.credentials import CredentialsError, credentials_path, load_credentials
from moltsim.runfolder import RunFolder
from moltsim.wire.embedded import PASSWORD_FILE

from .conftest import (
    POOLS,
    SUBMOLT,
    Broker,
    EngineProcess,
    encode,
    envelope,
    pool_client,
    post_action,
    raw_client,
)

HANDLES = [h for handles in POOLS.values() for h in handles]


def secret_forms(folder: RunFolder) -> dict[str, bytes]:
    """Every secret of the run, in every form it could plausibly be written in."""
    forms: dict[str, bytes] = {}
    for handle in HANDLES:
        secret = folder.credentials(handle).signer.export_secret()
        assert len(secret) == 32
        forms[f"{handle} secret key (raw)"] = secret
        forms[f"{handle} secret key (base64)"] = base64.b64encode(secret).rstrip(b"=")
        forms[f"{handle} secret key (urlsafe base64)"] = base64.urlsafe_b64encode(secret).rstrip(
            b"="
        )
        forms[f"{handle} secret key (hex)"] = secret.hex().encode()
    for account, password in folder.accounts().passwords.items():
        forms[f"{account} broker password"] = password.encode()
    return forms


def run_files(folder: RunFolder) -> list[Path]:
    return [p for p in (folder.db, *(folder.db.with_name(f"run.db{s}") for s in ("-wal", "-shm")))
            if p.exists()]  # fmt: skip


def leaks(paths: list[Path], forms: dict[str, bytes]) -> list[str]:
    found = []
    for path in paths:
        data = path.read_bytes()
        found += [f"{name} in {path.name}" for name, form in forms.items() if form in data]
    return found


async def some_activity(folder: RunFolder, broker: Broker) -> None:
    """Writes, queries and refused envelopes from every agent, through the real engine."""
    async with pool_client(folder, broker, "pool-1") as pool1:
        alice, bob = pool1.agents["alice"], pool1.agents["bob"]
        post = await asyncio.wait_for(alice.post(SUBMOLT, "a post", "with a body"), 15)
        assert post.ok, post
        post_id = post.data["post_id"]
        for result in await asyncio.wait_for(
            asyncio.gather(
                bob.comment("a comment", post_id=post_id),
                bob.vote("post", post_id, 1),
                alice.follow("bob"),
                alice.feed(limit=5),
                bob.search("post"),
            ),
            15,
        ):
            assert result.ok, result
    async with pool_client(folder, broker, "pool-2") as pool2:
        carol = pool2.agents["carol"]
        assert (await asyncio.wait_for(carol.subscribe(SUBMOLT), 15)).ok
        assert (await asyncio.wait_for(carol.notifications(), 15)).ok
    # Refused envelopes go to the ledger raw: a bad signature, a malformed one.
    t = folder.accounts().topics
    async with raw_client(folder, broker, "pool-1", [t.reply("alice")]) as raw:
        forged = envelope(folder.credentials("bob"), 10_000, post_action("forged"), agent="alice")
        for payload in (encode(forged), b'{"v": 1, "agent": "alice"}'):
            await raw.publish(t.act("alice"), payload)
            assert (await raw.receive(t.reply("alice")))["ok"] is False


@pytest.mark.slow
async def test_the_run_file_holds_no_secret_key_and_no_broker_password(
    run_folder: RunFolder, embedded_broker: Broker
) -> None:
    forms = secret_forms(run_folder)
    engine = await EngineProcess(run_folder, embedded_broker).astart()
    try:
        await some_activity(run_folder, embedded_broker)
        live = run_files(run_folder)
        assert run_folder.db.with_name("run.db-wal") in live  # scanned while the engine runs
        assert leaks(live, forms) == []
    finally:
        engine.stop_cleanly()
    assert leaks(run_files(run_folder), forms) == []
    # ... nor do the logs, which are handed around more freely than the key folder.
    logs = [*run_folder.logs.iterdir(), run_folder.broker / "broker.log"]
    assert leaks(logs, forms) == []

    # The scan is not blind: the public keys (the same size as the secrets) are in there.
    data = b"".join(p.read_bytes() for p in run_files(run_folder))
    for handle in HANDLES:
        assert run_folder.credentials(handle).public_key in data


def test_secret_files_are_private(run_folder: RunFolder, embedded_broker: Broker) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(run_folder.keys) == 0o700
    for handle in HANDLES:
        assert mode(credentials_path(run_folder.keys, handle)) == 0o600
    assert mode(run_folder.broker) == 0o700
    assert mode(run_folder.broker / "accounts.json") == 0o600
    assert mode(run_folder.broker / PASSWORD_FILE) == 0o600  # the embedded broker's hashes


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused(
    run_folder: RunFolder, tmp_path: Path, loose: int
) -> None:
    copy = tmp_path / "alice.key.json"
    shutil.copy(credentials_path(run_folder.keys, "alice"), copy)
    copy.chmod(0o600)
    assert load_credentials(copy).handle == "alice"
    copy.chmod(loose)
    with pytest.raises(CredentialsError) as refused:
        load_credentials(copy)
    message = str(refused.value)
    assert str(copy) in message
    assert "readable by others" in message and f"chmod 600 {copy}" in message


def test_no_repr_shows_a_secret_key(run_folder: RunFolder) -> None:
    creds = run_folder.credentials("alice")
    secret = creds.signer.export_secret()
    text = f"{creds!r} {creds.signer!r} {creds} {creds.signer}"
    for form in (secret.hex(), base64.b64encode(secret).decode()[:20]):
        assert form not in text
