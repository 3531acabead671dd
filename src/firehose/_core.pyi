"""Type stubs of the private Cython core. Use firehose.Decoder, not this module."""
from typing import Sequence

import pyarrow as pa

REASONS: tuple[str, ...]

def keep_rows(arr: pa.Array, keep: memoryview, kept: int) -> pa.Array:
    """arr with the rows where keep[i] (uint8) is 1, ``kept`` of them: arr.filter(keep)
    (firehose._parallel's dedupe)."""

def partition_ids(ids: memoryview, n: int, out: memoryview) -> None:
    """out[i] = XXH3_64(int64 ids[i] as 8 little-endian bytes) % n (firehose.dist)."""

def seat_pairs_by_rank(seats: list, ascending: memoryview, rank: memoryview,
                       row_ids: memoryview, flags: memoryview, ranks: memoryview,
                       order: memoryview, ids: memoryview, f: memoryview,
                       scratch: memoryview | None = None) -> None:
    """Each seat's (int64) matched rows laid out seat after seat by rank, as their ranks
    (firehose.entitlements)."""

def split_pairs(code: memoryview, rows: memoryview, order: memoryview, ids: memoryview,
                f: memoryview, scrub_bit: int, scrub: memoryview, bad_pos: memoryview,
                bad_order: memoryview, bad_ids: memoryview, bad_code: memoryview,
                hit: memoryview | None = None, perm: memoryview | None = None) -> int:
    """Delivered pairs (code 0) to the front in place, the others copied out; returns how many
    were delivered (firehose.entitlements)."""

def id_ranks(perm: memoryview, row_ids: memoryview, rank: memoryview) -> bool:
    """rank[perm[k]] = k; whether two rows share an id (firehose.entitlements)."""

def group_count(rows: memoryview, rule: memoryview, rule_seat: memoryview, nrows: int,
                pair_at: memoryview, row_at: memoryview) -> int:
    """Where each seat's matches and distinct rows start; how many rows matched
    (firehose.routing)."""

def group_fill(rows: memoryview, rule: memoryview, rule_seat: memoryview,
               rule_local: memoryview, pair_at: memoryview, row_at: memoryview,
               rule_s: memoryview, seat_rows: memoryview, offsets: memoryview) -> None:
    """Each seat's matches, distinct rows and rule list offsets (firehose.routing)."""

def merge_distinct(a: memoryview, b: memoryview, out: memoryview) -> int:
    """Two ascending runs merged into out, each id once; how many were written
    (firehose.entitlements)."""

class Engine:
    batch_size: int
    line_no: int
    def __init__(self, batch_size: int = ..., max_line_bytes: int = ..., max_depth: int = ...,
                 dedupe: bool = ..., window_ms: int = ...,
                 columns: list[int] | None = ...) -> None: ...
    def decode(self, buf: bytes | bytearray | memoryview, start: int, end: int,
               base_offset: int, source_code: int,
               final: bool) -> tuple[int, list[tuple[int, int, bytes, str, str | None, int]]]: ...
    @property
    def batch_full(self) -> bool: ...
    @property
    def pending_tweets(self) -> int: ...
    @property
    def pending_compliance(self) -> int: ...
    def take_tweets(self, sources: Sequence[str]) -> pa.RecordBatch: ...
    def take_compliance(self, sources: Sequence[str]) -> pa.RecordBatch: ...
    def stats(self) -> dict[str, int]: ...
    def dedupe_state(self) -> bytes: ...
    def load_dedupe_state(self, data: bytes) -> None: ...
    def dedupe_memory(self) -> tuple[int, int]: ...
    def admit_ids(self, ids: memoryview, out: memoryview | None = ...) -> int: ...

def gather_list_codes(offsets: list, codes: list, orders: list, bases: memoryview,
                      out_offsets: memoryview) -> "numpy.ndarray":
    """Chosen lists of several list arrays as one list array's offsets and int64 codes
    (firehose.entitlements)."""

def sort_pairs_by_key(key: memoryview, val: memoryview, key_out: memoryview,
                      val_out: memoryview) -> None:
    """(key, value) int64 pairs sorted by key, stably (firehose.entitlements' author index)."""

def merge_pairs(ka: memoryview, va: memoryview, kb: memoryview, vb: memoryview,
                ko: memoryview, vo: memoryview) -> int:
    """Two runs of (key, value) pairs sorted by key then value merged, repeats once."""

def simd_level(level: int | None = None) -> int: ...
def find_newline(buf: bytes | bytearray | memoryview) -> int:
    """The index of the first newline byte of a contiguous buffer, or -1."""
def json_path_parts(line: bytes, col: int) -> tuple[list, int]:
    """(keys and indices from the top, levels in all) of the place at byte ``col`` of a line
    (firehose.decoder.json_path_at)."""

def seats_by_rank(starts: memoryview, seat_codes: memoryview, pairs: memoryview,
                  rank_of: memoryview | None, hit: memoryview, off: memoryview,
                  codes: memoryview, scratch: memoryview | None = None) -> int:
    """The delivered pairs' seats regrouped by marked rank, as a CSR index (off, codes);
    returns the number of marked ranks (firehose.entitlements)."""
