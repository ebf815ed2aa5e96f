"""``manifest.json``: what an export holds, where it came from, and how to check it.

It holds no wall-clock time and no local path, so two exports of two stepped runs with the
same scenario and seed are byte-identical, manifest included.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from moltsim import __version__
from moltsim.export.options import ExportError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SIGNATURES = (
    "Ed25519 (public keys: agents.public_key, base64 of the raw 32 bytes) over the canonical"
    ' JSON (keys sorted, no spaces, UTF-8) of {"v": 1, "agent": agent, "seq": seq,'
    ' "action": payload}; sig is base64. Rows without sig were written by the runner.'
)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build(
    *,
    meta: dict[str, str],
    format: str,
    purpose: str,
    filters: dict[str, Any],
    files: dict[str, dict[str, Any]],
    consent: dict[str, Any],
) -> dict[str, Any]:
    clock: Any
    try:
        clock = json.loads(meta.get("clock", "null"))
    except json.JSONDecodeError:
        clock = None
    records: dict[str, int] = {}
    for entry in files.values():
        records[entry["entity"]] = records.get(entry["entity"], 0) + entry["records"]
    scenario_text = meta.get("scenario")
    return {
        "manifest_version": MANIFEST_VERSION,
        "moltsim_version": __version__,
        "run_moltsim_version": meta.get("moltsim_version"),
        "schema_version": int(meta.get("schema_version", "0")),
        "scenario": meta.get("scenario_name"),
        "scenario_sha256": (
            None if scenario_text is None else hashlib.sha256(scenario_text.encode()).hexdigest()
        ),
        "seed": None if meta.get("seed") is None else int(meta["seed"]),
        "clock": clock,
        "run_state": meta.get("state"),
        "format": format,
        "purpose": purpose,
        "filters": filters,
        "records": records,
        "files": dict(sorted(files.items())),
        "consent": consent,
        "signatures": SIGNATURES,
        "time": "every created_at is ISO-8601 sim time (UTC, microseconds)",
    }


def write(out: Path, manifest: dict[str, Any]) -> Path:
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ExportError(f"no export folder at {folder}")
    if not path.exists():
        raise ExportError(f"{folder} has no {MANIFEST}: not a moltsim export")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ExportError(f"{path} is not a moltsim export manifest")
    return manifest
