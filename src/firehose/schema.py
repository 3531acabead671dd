"""The Arrow schemas of firehose, in one place.

``TWEETS``      one row per top-level tweet, deduplicated by ``id``.
``COMPLIANCE``  one row per stream / compliance / control message (and per v2 partial error).
``REJECTS``     one row per line that could not be decoded, with the whole line kept.

Every table carries provenance: ``source_file`` (dictionary-encoded), ``line`` (1-based, per
source) and ``byte_offset`` (of the line's first byte in that source).
The field-by-field extraction rules are in ``docs/fields.md``.
"""
from __future__ import annotations

import pyarrow as pa

__all__ = ["TWEETS", "COMPLIANCE", "REJECTS", "DIALECTS", "COMPLIANCE_KINDS", "REJECT_REASONS",
           "COORD_TYPE", "RULE_TYPE", "MATCHING_RULES"]

_ts = pa.timestamp("ms", tz="UTC")
_str_list = pa.list_(pa.string())
_dict = pa.dictionary(pa.int32(), pa.string())

#: dialect names, in the order of their dictionary codes
DIALECTS = ("v1.1", "v2", "activity")

COORD_TYPE = pa.struct([pa.field("lon", pa.float64(), nullable=False),
                        pa.field("lat", pa.float64(), nullable=False)])
RULE_TYPE = pa.struct([pa.field("id", pa.string()), pa.field("tag", pa.string())])
#: the matching_rules column a delivery (and rules.annotate) writes: each row's rules
MATCHING_RULES = pa.list_(RULE_TYPE)

TWEETS = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("created_at", _ts),
    pa.field("text", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("source", pa.string()),
    pa.field("author_id", pa.int64()),
    pa.field("author_screen_name", pa.string()),
    pa.field("author_name", pa.string()),
    pa.field("author_description", pa.string()),
    pa.field("author_location", pa.string()),
    pa.field("author_followers_count", pa.int64()),
    pa.field("author_verified", pa.bool_()),
    pa.field("in_reply_to_status_id", pa.int64()),
    pa.field("in_reply_to_user_id", pa.int64()),
    pa.field("in_reply_to_screen_name", pa.string()),
    pa.field("retweeted_status_id", pa.int64()),
    pa.field("retweeted_user_id", pa.int64()),
    pa.field("retweeted_screen_name", pa.string()),
    pa.field("retweeted_text", pa.string()),
    pa.field("quoted_status_id", pa.int64()),
    pa.field("quoted_user_id", pa.int64()),
    pa.field("quoted_text", pa.string()),
    pa.field("hashtags", _str_list, nullable=False),
    pa.field("mentions", _str_list, nullable=False),
    pa.field("mention_ids", pa.list_(pa.int64()), nullable=False),
    pa.field("cashtags", _str_list, nullable=False),
    pa.field("urls", _str_list, nullable=False),
    pa.field("media_types", _str_list, nullable=False),
    pa.field("coordinates", COORD_TYPE),
    pa.field("place_id", pa.string()),
    pa.field("place_country_code", pa.string()),
    pa.field("withheld_in_countries", _str_list, nullable=False),
    pa.field("upstream_rules", pa.list_(RULE_TYPE), nullable=False),
    pa.field("dialect", _dict, nullable=False),
    pa.field("source_file", _dict, nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("byte_offset", pa.int64(), nullable=False),
])

#: compliance ``kind`` values the core emits
COMPLIANCE_KINDS = (
    "delete", "dm_delete", "scrub_geo", "status_withheld", "user_withheld",
    "user_delete", "user_undelete", "user_protect", "user_unprotect", "user_suspend",
    "user_unsuspend", "drop", "undrop", "tweet_edit", "limit", "warning", "disconnect",
    "system_info", "system_warn", "system_error", "batch_compliance", "api_error", "other",
)

COMPLIANCE = pa.schema([
    pa.field("kind", _dict, nullable=False),
    pa.field("tweet_id", pa.int64()),
    pa.field("user_id", pa.int64()),
    pa.field("up_to_tweet_id", pa.int64()),
    pa.field("object_id", pa.int64()),
    pa.field("countries", _str_list, nullable=False),
    pa.field("event_at", _ts),
    pa.field("count", pa.int64()),
    pa.field("code", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("dialect", _dict, nullable=False),
    pa.field("source_file", _dict, nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("byte_offset", pa.int64(), nullable=False),
])

#: reject ``reason`` codes
REJECT_REASONS = (
    "line_too_long", "invalid_utf8", "invalid_json", "truncated", "invalid_escape",
    "lone_surrogate", "too_deep", "not_an_object", "missing_id",
)

REJECTS = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("byte_offset", pa.int64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("field", pa.string()),
    pa.field("detail", pa.string(), nullable=False),
    pa.field("raw", pa.binary(), nullable=False),
])
