# Partition keys of a distributed replay (firehose.dist). Included by _core.pyx after
# _core_match.pxi, whose XXH3_64bits it uses.
#
# A tweet's partition is XXH3_64 (seed 0) of its id's 8 bytes, little-endian two's complement,
# modulo the partition count. It depends only on the id and the count: the same on every
# machine, every process and every Python (unlike hash()), so all copies of a tweet, and every
# compliance event naming it, land in the same partition. The byte form is fixed here rather
# than taken from the host's memory so a big-endian worker agrees.

cdef inline uint32_t partition_key(int64_t tweet_id, uint32_t n) noexcept nogil:
    cdef uint8_t b[8]
    cdef uint64_t v = <uint64_t>tweet_id
    cdef int k
    for k in range(8):
        b[k] = <uint8_t>((v >> (8 * k)) & 0xFF)
    return <uint32_t>(XXH3_64bits(b, 8) % n)


def partition_ids(const int64_t[::1] ids, uint32_t n, uint32_t[::1] out):
    """``out[i] = XXH3_64(ids[i] as 8 little-endian bytes) % n`` for every id, without the GIL.
    ``out`` must be as long as ``ids``; ``n`` must be positive. Returns None."""
    cdef Py_ssize_t i, m = ids.shape[0]
    if n == 0:
        raise ValueError("partition count must be positive")
    if out.shape[0] != m:
        raise ValueError("out must be as long as ids")
    with nogil:
        for i in range(m):
            out[i] = partition_key(ids[i], n)
