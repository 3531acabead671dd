"""Routing: every client's rules in one compiled set, one pass per batch, matches split by client.

All clients' rules go into a single :class:`firehose.rules.RuleSet` (rule ids are qualified by
the client), so each tweet is tokenised once however many clients there are. The result gives
each client its matched rows, once each, with every one of its rules that matched
(``matching_rules`` list<struct<id, tag>>), and counts the rows nobody matched (``_unmatched``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa

from .rules import Rule, RuleSet

__all__ = ["Router", "Routed", "UNMATCHED"]

UNMATCHED = "_unmatched"
_SEP = "\x1f"
_RULE_TYPE = pa.struct([("id", pa.string()), ("tag", pa.string())])


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
        self._rule_client = np.array([self._clients.index(c) for c, _ in ids], np.int32)
        self._rule_id = pa.array([i for _, i in ids], pa.string())
        self._rule_tag = pa.array([r.tag for r in self.ruleset.rules], pa.string())

    @classmethod
    def from_config(cls, config) -> "Router":
        return cls({name: list(c.rules) for name, c in config.clients.items()})

    def route(self, tweets: pa.Table) -> Routed:
        rows, idx = self.ruleset.match_indices(tweets)
        clients = self._rule_client[idx] if len(idx) else np.empty(0, np.int32)
        # group the (row, rule) pairs by client, keeping row-then-rule order inside each
        order = np.argsort(clients, kind="stable")
        rows_s, idx_s, cl_s = rows[order], idx[order], clients[order]
        bounds = np.searchsorted(cl_s, np.arange(len(self._clients) + 1))
        out: dict[str, tuple[np.ndarray, pa.Array]] = {}
        for ci, name in enumerate(self._clients):
            r = rows_s[bounds[ci]:bounds[ci + 1]]
            k = idx_s[bounds[ci]:bounds[ci + 1]]
            uniq, start = np.unique(r, return_index=True)
            offsets = np.append(start, len(r)).astype(np.int32)
            take = pa.array(k, pa.int32())
            items = pa.StructArray.from_arrays([self._rule_id.take(take),
                                                self._rule_tag.take(take)], names=["id", "tag"])
            out[name] = (uniq, pa.ListArray.from_arrays(pa.array(offsets), items))
        unmatched = tweets.num_rows - len(np.unique(rows))
        return Routed(out, unmatched, len(rows))
