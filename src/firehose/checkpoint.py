"""Resume state of a replay, written only after every sink has committed.

One file, ``OUT/checkpoint.arrows``: an Arrow IPC stream holding one row — a JSON document
(format version, the configuration hash, the inputs, the last committed part, where to
restart: input index, source name, byte offset of the first unfinished line and the number
of lines before it, the run's counters) and three binary blobs: the decoder's dedupe memory,
the compliance state and the entitlement state (caps, delivered ids). It is replaced
atomically (temporary file, fsync, rename, fsync of the directory), so it is always either
the previous checkpoint or the new one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pyarrow as pa

from .errors import StateError
from .sinks import atomic_write

__all__ = ["Checkpoint", "CHECKPOINT_NAME", "FORMAT"]

CHECKPOINT_NAME = "checkpoint.arrows"
FORMAT = 1


@dataclass
class Checkpoint:
    config_hash: str
    inputs: list[str]
    part: int                 # parts up to this number are committed
    input_index: int          # the input to continue (len(inputs): all read)
    offset: int               # decompressed byte offset of the first unfinished line
    lines: int                # lines of that input before ``offset``
    batch: int                # batches processed
    counters: dict = field(default_factory=dict)
    dedupe: bytes = b""
    compliance: bytes = b""
    entitlements: bytes = b""
    extra: dict = field(default_factory=dict)     # the embedder's own position (JSON)

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "config_hash": self.config_hash, "inputs": self.inputs,
                "part": self.part, "input_index": self.input_index, "offset": self.offset,
                "lines": self.lines, "batch": self.batch, "counters": self.counters,
                "extra": self.extra}
        table = pa.table({
            "meta": pa.array([json.dumps(meta, sort_keys=True)], pa.string()),
            "dedupe": pa.array([self.dedupe], pa.large_binary()),
            "compliance": pa.array([self.compliance], pa.large_binary()),
            "entitlements": pa.array([self.entitlements], pa.large_binary()),
        })
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "checkpoint") -> "Checkpoint":
        try:
            table = pa.ipc.open_stream(data).read_all()
            row = table.to_pylist()[0]
            meta = json.loads(row["meta"])
        except (pa.ArrowInvalid, OSError, IndexError, KeyError, ValueError) as e:
            raise StateError(f"{where}: not a readable checkpoint ({e})") from None
        if meta.get("format") != FORMAT:
            raise StateError(f"{where}: checkpoint format {meta.get('format')!r}, "
                             f"this version reads {FORMAT}")
        return cls(meta["config_hash"], list(meta["inputs"]), int(meta["part"]),
                   int(meta["input_index"]), int(meta["offset"]), int(meta["lines"]),
                   int(meta["batch"]), meta.get("counters") or {}, row["dedupe"] or b"",
                   row["compliance"] or b"", row["entitlements"] or b"", meta.get("extra") or {})

    def save(self, directory: str) -> None:
        atomic_write(os.path.join(directory, CHECKPOINT_NAME), self.to_bytes())

    @classmethod
    def load(cls, directory: str) -> "Checkpoint | None":
        path = os.path.join(directory, CHECKPOINT_NAME)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"{path}: cannot read: {e.strerror or e}") from None
        return cls.from_bytes(data, path)
