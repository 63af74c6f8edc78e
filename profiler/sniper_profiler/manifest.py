"""Generator provenance for model files: ``sniper-onnx generate --out DIR`` writes DIR/manifest.jsonl
(one line per net: file, net_id, seed, family, config, generator_version). A record of a file listed
there carries that spec as its source, so the cloud side can re-make the net without the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

MANIFEST_NAME = "manifest.jsonl"
SPEC_FIELDS = ("net_id", "seed", "family", "config", "generator_version")


def generator_sources(folder: "str | Path") -> Dict[str, Dict[str, Any]]:
    """File name -> ``{"kind": "generator", ...}`` source for the nets the folder's manifest lists."""
    path = Path(folder) / MANIFEST_NAME
    sources: Dict[str, Dict[str, Any]] = {}
    if not path.is_file():
        return sources
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a torn line from an interrupted generate: that net has no provenance
            if not isinstance(entry, dict) or not entry.get("file") or any(f not in entry for f in SPEC_FIELDS):
                continue
            spec = {name: entry[name] for name in SPEC_FIELDS}
            sources[Path(entry["file"]).name] = {"kind": "generator", "generator_version": entry["generator_version"], "spec": spec}
    return sources


def source_for(model_path: "str | Path", cache: Dict[str, Dict[str, Dict[str, Any]]]) -> Dict[str, Any]:
    path = Path(model_path)
    folder = str(path.resolve().parent)
    if folder not in cache:
        cache[folder] = generator_sources(folder)
    return cache[folder].get(path.name, {"kind": "file"})
