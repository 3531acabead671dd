# Declarations of the firehose core. The implementation is _core.pyx and its _core_*.pxi parts.
from libc.stdint cimport int64_t, uint64_t, uint32_t, int32_t, uint8_t

# ---------------------------------------------------------------- growable byte buffers
cdef struct Buf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap
    Py_ssize_t hint      # the first allocation of an empty buffer (columns: sized by the last batch)

# One Arrow column under construction. Which buffers are used depends on the column type:
#   I64/TS  valid + vals(int64)            BOOL  valid + vals(bitmap)
#   STR     valid + offs(int32) + data     DICT  vals(int32 codes)
#   LSTR    offs(list int32) + child offs2(int32) + data
#   LI64    offs(list int32) + vals(int64)
#   COORD   valid + vals(lon f64) + data(lat f64)
#   RULES   offs(list int32) + (id: offs2 + data + valid2) + (tag: offs3 + data3 + valid3)
cdef struct Col:
    int kind
    Py_ssize_t n          # rows
    Py_ssize_t nulls
    Py_ssize_t n2         # child rows (lists)
    Py_ssize_t nulls2
    Py_ssize_t nulls3
    Buf valid
    Buf vals
    Buf offs
    Buf data
    Buf offs2
    Buf valid2
    Buf offs3
    Buf data3
    Buf valid3

# ---------------------------------------------------------------- the JSON tape
cdef struct Node:
    uint8_t type
    uint8_t flags
    uint32_t start       # first byte (strings: after the opening quote)
    uint32_t end         # one past the last byte (strings: the closing quote)
    uint32_t next        # tape index just after this node's subtree
    uint32_t count       # containers: children (objects: key/value pairs stored);
                         # object keys: the key's KY_ number (_core_keys.pxi)

cdef struct Tape:
    const unsigned char* s
    Py_ssize_t n
    Py_ssize_t pos
    Node* nodes
    Py_ssize_t len
    Py_ssize_t cap
    int max_depth
    int err
    Py_ssize_t err_pos
    Buf mem               # member tables of the cached objects (64 fixed slots, KY_ number -> value node)
    uint32_t cobj[64]     # direct-mapped by object node index
    Buf keybuf            # an escaped key, decoded to be numbered
    const uint8_t* ktab   # the key table: which members get nodes (NULL: all columns'; fh_ps)
    void* kp              # the fast scan's key memory (fh_kp*, fh_kp_new; NULL: none)

# ---------------------------------------------------------------- dedupe
cdef enum:
    DEDUPE_GENS = 12      # buckets: 5 in the window, bmax+1, 2 candidates, 1 being made, spare
    DEDUPE_HOT = 8        # leaves tried before the bucket's directory is searched

# (see _core_dedupe.pxi) a plain open-addressing table: the pre-snowflake ids
cdef struct IdTable:
    int64_t* keys
    Py_ssize_t cap
    Py_ssize_t n
    bint has_zero

# a small open-addressing table of the snowflake ids from lo up to the next leaf's lo: narrow
# (4-byte keys id - base + 1, for ids base .. base + 2^32 - 2 only) or wide (8-byte keys, any id)
cdef struct Leaf:
    void* keys            # uint32_t[cap] (narrow) or int64_t[cap] (wide); 0 = empty
    int64_t lo
    int64_t top           # the largest id held (lo - 1 while empty)
    int64_t base          # narrow: the smallest id the keys can hold
    int32_t cap
    int32_t n
    int32_t limit         # at n == limit an insert above top first grows or seals the leaf,
    int32_t hard          # at n == hard any insert first grows or splits it
    int32_t wide

# a leaf tried first for the ids lo..hi (its range, and, narrow, its keys' span)
cdef struct HotLeaf:
    int64_t lo
    int64_t hi
    Leaf* leaf
    Py_ssize_t* count     # its bucket's id count

# one time bucket (window/4 of tweet time): its leaves, in id order, tile [lo, hi]
cdef struct Bucket:
    int64_t b
    int64_t lo
    int64_t hi
    Leaf* leaves
    Py_ssize_t nleaves
    Py_ssize_t cap_leaves
    Py_ssize_t n          # ids held
    Py_ssize_t nbytes     # bytes of its keys and directory


# ---------------------------------------------------------------- reject records
cdef struct RejectRec:
    int64_t line
    int64_t byte_offset
    Py_ssize_t start      # of the line in the buffer handed to decode()
    Py_ssize_t length
    Py_ssize_t err_pos    # within the line
    int reason
    const char* field

# ---------------------------------------------------------------- all decoder state, in C
cdef struct State:
    Col cols[37]          # tweets, in schema order
    Col ccols[14]         # compliance, in schema order
    Tape tape
    Buf scratch
    Buf scratch2
    Buf msgs              # Msg records of the current line
    Buf lookups           # Lookup records of the current v2 envelope
    Buf rejects           # RejectRec records
    # dedupe
    bint dedupe
    int64_t bucket_ms
    int64_t bmax
    Bucket gens[DEDUPE_GENS]   # bmax-4 .. bmax, perhaps bmax+1, the candidates, one being made
    int ngens
    int64_t cand[2]       # unconfirmed jumps ahead of bmax+1 (buckets), oldest first
    int ncand
    bint loading          # restoring a state: no window moves, no candidates
    IdTable legacy
    HotLeaf hot[DEDUPE_HOT]   # the leaves of the last few ids found or added by the slow path
    int nexthot               # the entry to replace next (round robin)
    Bucket* hot_bucket    # the bucket of the last such id
    uint64_t want         # bit i: tweet column i is built and exported (see W())
    uint8_t kt[2048]      # the key table of the projection (tape.ktab; ktab_build)
    # limits
    Py_ssize_t max_line_bytes
    Py_ssize_t batch_size
    Py_ssize_t bytes_since_flush
    # per-line context
    int32_t source_code
    int64_t line_no
    int64_t line_off
    const char* reject_field
    # counters
    int64_t n_lines, n_blank, n_tweets, n_dups, n_late, n_compliance, n_rejects, n_bytes


cdef class Engine:
    cdef State st
    cdef object _which    # the tweet columns exported (None: all)
