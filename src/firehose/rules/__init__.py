"""PowerTrack rules: the language (:mod:`.syntax`), later compiled and matched in batches.

    >>> from firehose.rules import Rule, parse, check
    >>> parse("apple OR iphone ipad")
    Or(children=(Keyword(text='apple', fold=False, prefix=False), And(children=(Keyword(text='iphone', fold=False, prefix=False), Keyword(text='ipad', fold=False, prefix=False)))))
    >>> check([Rule("1", "lang:en is:retweet")])[0].reason
    'lang:, is: cannot stand alone: the rule needs a keyword, phrase or standalone operator (such as from: or #hashtag)'
"""
from __future__ import annotations

from .compile import RuleSet
from .syntax import (HAS_VALUES, IS_VALUES, MAX_RULE_LENGTH, NON_STANDALONE_OPS, STANDALONE_OPS,
                     And, Keyword, Node, Not, Op, Or, Phrase, Rule, RuleError, check, parse)

__all__ = [
    "Rule", "RuleSet", "RuleError", "parse", "check",
    "And", "Or", "Not", "Keyword", "Phrase", "Op", "Node",
    "MAX_RULE_LENGTH", "STANDALONE_OPS", "NON_STANDALONE_OPS", "HAS_VALUES", "IS_VALUES",
]
