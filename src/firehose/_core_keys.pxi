# The object keys the emitter reads (docs/fields.md), numbered. Included by _core.pyx.
#
# The scanner numbers every object key it meets against this table (Node.count of a key
# node holds the number, KY_NONE when the key is not here) and does not build tape nodes for
# the members with other keys (their values are still validated completely): lookups
# (``get``) compare numbers, and objects hold only what is read. The emitter names keys by
# their KY_ constants, so a key it asks for that is missing here does not compile; add a new
# key to both the enum and KEY_NAMES, in the same place (tests/test_decoder.py checks that
# the two agree). An object's first member is always kept, whatever its key.

cdef enum:
    KY_action = 0
    KY_actor
    KY_attachments
    KY_author
    KY_author_id
    KY_body
    KY_cashtags
    KY_code
    KY_coordinates
    KY_country_code
    KY_country_codes
    KY_created_at
    KY_data
    KY_delete
    KY_description
    KY_detail
    KY_direct_message
    KY_disconnect
    KY_displayName
    KY_entities
    KY_error
    KY_errors
    KY_event_at
    KY_expanded_url
    KY_extended_entities
    KY_extended_tweet
    KY_followersCount
    KY_followers_count
    KY_full_text
    KY_generator
    KY_geo
    KY_gnip
    KY_hashtags
    KY_id
    KY_id_str
    KY_inReplyTo
    KY_in_reply_to_screen_name
    KY_in_reply_to_status_id
    KY_in_reply_to_status_id_str
    KY_in_reply_to_user_id
    KY_in_reply_to_user_id_str
    KY_includes
    KY_info
    KY_initial_tweet_id
    KY_lang
    KY_limit
    KY_link
    KY_location
    KY_long_object
    KY_matching_rules
    KY_media
    KY_media_key
    KY_media_keys
    KY_mentions
    KY_message
    KY_name
    KY_note_tweet
    KY_object
    KY_parameter
    KY_place
    KY_place_id
    KY_places
    KY_postedTime
    KY_preferredUsername
    KY_public_metrics
    KY_quoted_status
    KY_quoted_status_id
    KY_quoted_status_id_str
    KY_reason
    KY_referenced_tweets
    KY_resource_id
    KY_resource_type
    KY_retweeted_status
    KY_screen_name
    KY_scrub_geo
    KY_sent
    KY_source
    KY_status
    KY_status_withheld
    KY_statuses
    KY_summary
    KY_symbols
    KY_tag
    KY_target
    KY_text
    KY_timestampMs
    KY_timestamp_ms
    KY_title
    KY_track
    KY_tweet
    KY_tweets
    KY_twitter_country_code
    KY_twitter_entities
    KY_twitter_extended_entities
    KY_twitter_lang
    KY_twitter_quoted_status
    KY_type
    KY_up_to_id
    KY_up_to_status_id
    KY_up_to_status_id_str
    KY_up_to_status_id_string
    KY_up_to_tweet_id
    KY_url
    KY_urls
    KY_user
    KY_user_id
    KY_user_id_str
    KY_user_mentions
    KY_user_withheld
    KY_username
    KY_users
    KY_verb
    KY_verified
    KY_warn
    KY_warning
    KY_withheld
    KY_withheld_in_countries
    KY_COUNT

cdef extern from *:
    """
    #define FH_KY_NONE 0xFFFFFFFFu
    """
    const uint32_t KY_NONE "FH_KY_NONE"       # not a key the emitter reads

KEY_NAMES = (
    "action", "actor", "attachments", "author", "author_id", "body", "cashtags", "code",
    "coordinates", "country_code", "country_codes", "created_at", "data", "delete", "description",
    "detail", "direct_message", "disconnect", "displayName", "entities", "error", "errors",
    "event_at", "expanded_url", "extended_entities", "extended_tweet", "followersCount",
    "followers_count", "full_text", "generator", "geo", "gnip", "hashtags", "id", "id_str",
    "inReplyTo", "in_reply_to_screen_name", "in_reply_to_status_id", "in_reply_to_status_id_str",
    "in_reply_to_user_id", "in_reply_to_user_id_str", "includes", "info", "initial_tweet_id",
    "lang", "limit", "link", "location", "long_object", "matching_rules", "media", "media_key",
    "media_keys", "mentions", "message", "name", "note_tweet", "object", "parameter", "place",
    "place_id", "places", "postedTime", "preferredUsername", "public_metrics", "quoted_status",
    "quoted_status_id", "quoted_status_id_str", "reason", "referenced_tweets", "resource_id",
    "resource_type", "retweeted_status", "screen_name", "scrub_geo", "sent", "source", "status",
    "status_withheld", "statuses", "summary", "symbols", "tag", "target", "text", "timestampMs",
    "timestamp_ms", "title", "track", "tweet", "tweets", "twitter_country_code",
    "twitter_entities", "twitter_extended_entities", "twitter_lang", "twitter_quoted_status",
    "type", "up_to_id", "up_to_status_id", "up_to_status_id_str", "up_to_status_id_string",
    "up_to_tweet_id", "url", "urls", "user", "user_id", "user_id_str", "user_mentions",
    "user_withheld", "username", "users", "verb", "verified", "warn", "warning", "withheld",
    "withheld_in_countries",
)
