"""Read the config back from an offline wandb run (``run-<id>.wandb``), as a dashboard gets it.

The file is wandb's LevelDB-style record log: a 7-byte header, then 32 KiB blocks of records
(crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last), each a protobuf ``Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def _records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    pos, parts = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            parts = chunk
        elif kind == 3:
            parts += chunk
        elif kind == 4:
            yield parts + chunk
            parts = b""


def offline_config(job_dir: Path) -> dict[str, Any]:
    """The run config of the (single) offline wandb run under ``job_dir/wandb``."""
    from wandb.proto import wandb_internal_pb2 as pb

    (run_file,) = list((Path(job_dir) / "wandb").glob("offline-run-*/run-*.wandb"))
    config: dict[str, Any] = {}
    for blob in _records(run_file):
        record = pb.Record()
        record.ParseFromString(blob)
        kind = record.WhichOneof("record_type")
        items = (
            record.run.config.update
            if kind == "run"
            else record.config.update
            if kind == "config"
            else []
        )
        for item in items:
            config[item.key] = json.loads(item.value_json)
    return config


def strings(value: Any) -> Iterator[str]:
    """Every string (keys and values) inside a nested config."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value
