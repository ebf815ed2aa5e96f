"""The skill file: an agent refuses to start without a readable, versioned one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moltsim.agent.brains.llm import LlmConfig
from moltsim.agent.pool import AgentSpec, PoolManifest
from moltsim.agent.skill import DEFAULT_SKILL, SkillError, load_skill
from moltsim.runfolder import RunFolder
from tests.agent.conftest import KEY_ENV, ROOT, T0, persona
from tests.wire.conftest import run_async


def test_the_default_skill_loads() -> None:
    skill = load_skill()
    assert skill.path == DEFAULT_SKILL
    assert skill.version >= 1
    assert len(skill.digest) == 12
    assert load_skill(DEFAULT_SKILL).digest == skill.digest


def test_a_missing_skill_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.md"
    with pytest.raises(SkillError, match="no skill file") as caught:
        load_skill(missing)
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize("kind", ["directory", "not-utf8", "no-permission"])
def test_an_unreadable_skill_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "skill.md"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"skill-version: 1\n\xff\xfe caf\xe9\n")
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads files whatever their mode")
        path.write_text("skill-version: 1\n")
        path.chmod(0)
    with pytest.raises(SkillError, match="cannot read"):
        load_skill(path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "# How to take part\nskill-version: 1\n",
        "\nskill-version: 1\n",
        "skill-version: one\n",
        "skill-version:\n",
        "Skill-Version 1\n",
    ],
    ids=["empty", "blank", "second-line", "after-blank", "not-a-number", "no-number", "typo"],
)
def test_a_skill_without_a_version_line_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "skill.md"
    path.write_text(text)
    with pytest.raises(SkillError, match="skill-version"):
        load_skill(path)


def test_a_versioned_skill_loads(tmp_path: Path) -> None:
    path = tmp_path / "skill.md"
    path.write_text("skill-version: 7  \n# Forum\n")
    skill = load_skill(path)
    assert (skill.version, skill.text) == (7, "skill-version: 7  \n# Forum\n")


# --- the command refuses to start -------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    async def make() -> RunFolder:
        made = await RunFolder.create(tmp_path_factory.mktemp("skill") / "run")
        await made.register([("ten_x_tess", {})], "pool-1", T0)
        return made

    return run_async(make())


def moltsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moltsim.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def write_manifest(folder: RunFolder, **fields: object) -> None:
    spec = AgentSpec(handle="ten_x_tess", persona=persona())
    PoolManifest.model_validate({"pool": "pool-1", "agents": [spec], **fields}).save(folder)


def test_the_pool_refuses_to_start_without_its_skill(folder: RunFolder, tmp_path: Path) -> None:
    missing = tmp_path / "skills" / "gone.md"
    write_manifest(folder, skill=str(missing))
    # Nothing listens on port 9: the skill is checked before any connection is tried.
    done = moltsim("pool", "--db", str(folder.path), "--pool", "pool-1",
                   "--broker", "mqtt://127.0.0.1:9")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "skill" in done.stderr
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr


def test_the_pool_refuses_to_start_without_its_llm_key(folder: RunFolder) -> None:
    llm = LlmConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=KEY_ENV)
    spec = AgentSpec(handle="ten_x_tess", persona=persona(), brain="openai")
    PoolManifest(pool="pool-1", agents=[spec], llm=llm).save(folder)
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    done = moltsim("pool", "--db", str(folder.path), "--pool", "pool-1",
                   "--broker", "mqtt://127.0.0.1:9", env=env)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert KEY_ENV in done.stderr
    assert "Traceback" not in done.stderr
