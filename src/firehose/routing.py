"""Routing: every client's rules in one compiled set, one pass per batch, matches split by client.

All clients' rules go into a single :class:`firehose.rules.RuleSet` (rule ids are qualified by
the client), so each tweet is tokenised once however many clients there are. The result gives
each client its matched rows, once each, with every one of its rules that matched
(``matching_rules`` list<struct<id, tag>>, the id and tag as dictionary columns over the rule
set's: :data:`MATCHING_RULES` is what a delivery writes out), and counts the rows nobody
matched (``_unmatched``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa

from . import _core
from .entitlements import _Arena
from .rules import Rule, RuleSet
from .schema import MATCHING_RULES

__all__ = ["Router", "Routed", "UNMATCHED", "MATCHING_RULES"]

UNMATCHED = "_unmatched"
_SEP = "\x1f"


@dataclass
class Routed:
    by_client: dict[str, tuple[np.ndarray, pa.Array]]   # rows, matching_rules per row
    unmatched: int
    matched_pairs: int


class Router:
    """Clients' rules compiled once; :meth:`route` a batch of tweets."""

    def __init__(self, client_rules: Mapping[str, "list[Rule] | tuple[Rule, ...]"]):
        rules = []
        self._clients = sorted(client_rules)
        for c in self._clients:
            for r in client_rules[c]:
                rules.append(Rule(f"{c}{_SEP}{r.id}", r.value, r.tag, r.fold))
        self.ruleset = RuleSet(rules)
        ids = [r.id.split(_SEP, 1) for r in self.ruleset.rules]
        at = {c: i for i, c in enumerate(self._clients)}
        self._rule_client = np.array([at[c] for c, _ in ids], np.int32)
        rule_id = pa.array([i for _, i in ids], pa.string())
        rule_tag = pa.array([r.tag for r in self.ruleset.rules], pa.string())
        # per client its own rules' ids and tags (the dictionaries of its lists: a client's
        # lists carry its rules only, not the whole set's) and each rule's index among them
        order = np.argsort(self._rule_client, kind="stable")
        cuts = np.searchsorted(self._rule_client[order], np.arange(len(self._clients) + 1))
        self._rule_local = np.zeros(len(ids), np.int32)
        self._dicts = []
        for ci in range(len(self._clients)):
            ks = order[cuts[ci]:cuts[ci + 1]]
            self._rule_local[ks] = np.arange(len(ks), dtype=np.int32)
            take = pa.array(ks, pa.int64())
            self._dicts.append((rule_id.take(take), rule_tag.take(take)))
        # the split's outputs (~120 MB for 1M tweets at 200 clients) in memory reused from
        # batch to batch once the previous batch's are dropped: fresh memory cost a page
        # fault and the kernel's zeroing per page, a third of the split's time
        self._arena = _Arena()

    @classmethod
    def from_config(cls, config) -> "Router":
        return cls({name: list(c.rules) for name, c in config.clients.items()})

    def route(self, tweets: pa.Table) -> Routed:
        """Match the batch against every client's rules and split the matches by client."""
        rows, idx = self.ruleset.match_indices(tweets)
        return self.group(tweets.num_rows, rows, idx)

    def group(self, num_rows: int, rows: np.ndarray, idx: np.ndarray) -> Routed:
        """Split the matches of a batch of ``num_rows`` rows (``ruleset.match_indices``:
        (row, rule index) pairs by row, then rule) by client."""
        idx = np.asarray(idx)
        if len(idx) and idx.dtype != np.int32 and (idx.min() < 0 or idx.max() >= len(self._rule_client)):
            raise ValueError("a match names a rule outside the rule set")
        rows = np.ascontiguousarray(rows, np.int64)
        idx = np.ascontiguousarray(idx, np.int32)
        # the (row, rule) pairs grouped by client in two linear passes of the core, keeping
        # row-then-rule order inside each: per client its matches' rules, its distinct rows
        # and the list offsets of their rules
        ns = len(self._clients)
        pair_at = np.zeros(ns + 1, np.int64)
        row_at = np.zeros(ns + 1, np.int64)
        matched = _core.group_count(rows, idx, self._rule_client, num_rows, pair_at, row_at)
        if ns and int(np.diff(pair_at).max()) > 2**31 - 1:
            raise ValueError("a client matched 2**31 rules or more in one batch (list offsets "
                             "are int32): use smaller batches")
        self._arena.next_batch()
        rule_s = self._arena.empty(len(rows), np.int32)
        seat_rows = self._arena.empty(int(row_at[-1]), np.int64)
        offsets = self._arena.empty(int(row_at[-1]) + ns, np.int32)
        _core.group_fill(rows, idx, self._rule_client, self._rule_local, pair_at, row_at,
                         rule_s, seat_rows, offsets)
        out: dict[str, tuple[np.ndarray, pa.Array]] = {}
        for ci, name in enumerate(self._clients):
            # the rules as indices into the client's rule ids and tags (dictionary columns):
            # no string is copied per match; a Delivery writes out those it delivers.
            # The indices are the client's own rules' (group_fill writes rule_local), in
            # range by construction: not checked again (safe=False)
            take = pa.array(rule_s[pair_at[ci]:pair_at[ci + 1]])
            ids, tags = self._dicts[ci]
            items = pa.StructArray.from_arrays(
                [pa.DictionaryArray.from_arrays(take, ids, safe=False),
                 pa.DictionaryArray.from_arrays(take, tags, safe=False)], names=["id", "tag"])
            lo, hi = int(row_at[ci]), int(row_at[ci + 1])
            out[name] = (seat_rows[lo:hi],
                         pa.ListArray.from_arrays(pa.array(offsets[lo + ci:hi + ci + 1]), items))
        return Routed(out, num_rows - matched, len(rows))
