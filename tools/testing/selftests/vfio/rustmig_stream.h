/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration stream of the rustmig vfio-pci variant driver
 * (include/uapi/linux/vfio_rustmig.h), as the kselftests read and forge it:
 * CRC-32C and XXH64, the check values of a header and of a record, the
 * records of a stream held in memory.
 *
 * The helpers work on bytes, never on the uAPI structs in place: a forged
 * stream is misaligned and malformed at will.
 */
#ifndef SELFTESTS_VFIO_RUSTMIG_STREAM_H
#define SELFTESTS_VFIO_RUSTMIG_STREAM_H

#include <assert.h>
#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <linux/types.h>
#include <linux/vfio_rustmig.h>

/* The layout the helpers (and the driver) rely on. */
static_assert(sizeof(struct rustmig_stream_header) == RUSTMIG_STREAM_HEADER_LEN,
	      "the version 1.0 header is 72 bytes");
static_assert(offsetof(struct rustmig_stream_header, header_crc) ==
	      RUSTMIG_STREAM_HEADER_CRC_OFFSET, "header_crc is at offset 64");
static_assert(sizeof(struct rustmig_record_header) == 16, "a record header is 16 bytes");

/* A record header's bytes that its CRC covers: tag, flags and len. */
#define RUSTMIG_RECORD_CRC_COVERS	offsetof(struct rustmig_record_header, crc)

static inline __u16 rustmig_get16(const void *p)
{
	__u16 v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline __u32 rustmig_get32(const void *p)
{
	__u32 v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline __u64 rustmig_get64(const void *p)
{
	__u64 v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void rustmig_put16(void *p, __u16 v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void rustmig_put32(void *p, __u32 v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void rustmig_put64(void *p, __u64 v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

/* The reflected Castagnoli polynomial. */
#define RUSTMIG_CRC32C_POLY	0x82f63b78

/*
 * Run the CRC-32C register @crc over @len bytes, one bit at a time: the
 * definition, against which the table below is checked.
 */
static inline __u32 rustmig_crc32c_bitwise(__u32 crc, const void *buf, size_t len)
{
	const __u8 *p = buf;
	int i;

	while (len--) {
		crc ^= *p++;
		for (i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (RUSTMIG_CRC32C_POLY & -(crc & 1));
	}
	return crc;
}

/*
 * Run the CRC-32C register @crc over @len bytes, a byte at a time. No
 * initial value or final XOR: start from ~0 and invert the result, or use
 * rustmig_crc32c().
 */
static inline __u32 rustmig_crc32c_update(__u32 crc, const void *buf, size_t len)
{
	static __u32 table[256];
	const __u8 *p = buf;
	__u8 b;

	/* Entry 0 is 0 in any case; entry 128 is the polynomial once built. */
	if (!table[128]) {
		for (b = 255; b; b--)
			table[b] = rustmig_crc32c_bitwise(0, &b, 1);
	}
	while (len--)
		crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xff];
	return crc;
}

/* The CRC-32C of @len bytes: "123456789" gives 0xe3069283. */
static inline __u32 rustmig_crc32c(const void *buf, size_t len)
{
	return ~rustmig_crc32c_update(~0U, buf, len);
}

/* XXH64 (lib/xxhash.c's xxh64()), fed incrementally. */
struct rustmig_xxh64 {
	__u64 total;
	__u64 v[4];
	__u64 seed;
	__u8 buf[32];
	size_t buffered;
};

#define RUSTMIG_XXH_P1	0x9e3779b185ebca87ULL
#define RUSTMIG_XXH_P2	0xc2b2ae3d27d4eb4fULL
#define RUSTMIG_XXH_P3	0x165667b19e3779f9ULL
#define RUSTMIG_XXH_P4	0x85ebca77c2b2ae63ULL
#define RUSTMIG_XXH_P5	0x27d4eb2f165667c5ULL

static inline __u64 rustmig_rotl64(__u64 x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline __u64 rustmig_xxh64_round(__u64 acc, __u64 in)
{
	return rustmig_rotl64(acc + in * RUSTMIG_XXH_P2, 31) * RUSTMIG_XXH_P1;
}

static inline void rustmig_xxh64_init(struct rustmig_xxh64 *h, __u64 seed)
{
	memset(h, 0, sizeof(*h));
	h->seed = seed;
	h->v[0] = seed + RUSTMIG_XXH_P1 + RUSTMIG_XXH_P2;
	h->v[1] = seed + RUSTMIG_XXH_P2;
	h->v[2] = seed;
	h->v[3] = seed - RUSTMIG_XXH_P1;
}

static inline void rustmig_xxh64_stripe(struct rustmig_xxh64 *h, const __u8 *p)
{
	int i;

	for (i = 0; i < 4; i++)
		h->v[i] = rustmig_xxh64_round(h->v[i], rustmig_get64(p + 8 * i));
}

static inline void rustmig_xxh64_update(struct rustmig_xxh64 *h, const void *buf, size_t len)
{
	const __u8 *p = buf;
	size_t n;

	h->total += len;
	if (h->buffered) {
		n = 32 - h->buffered < len ? 32 - h->buffered : len;
		memcpy(h->buf + h->buffered, p, n);
		h->buffered += n;
		p += n;
		len -= n;
		if (h->buffered < 32)
			return;
		rustmig_xxh64_stripe(h, h->buf);
		h->buffered = 0;
	}
	for (; len >= 32; p += 32, len -= 32)
		rustmig_xxh64_stripe(h, p);
	memcpy(h->buf, p, len);
	h->buffered = len;
}

static inline __u64 rustmig_xxh64_merge(__u64 acc, __u64 v)
{
	return (acc ^ rustmig_xxh64_round(0, v)) * RUSTMIG_XXH_P1 + RUSTMIG_XXH_P4;
}

static inline __u64 rustmig_xxh64_digest(const struct rustmig_xxh64 *h)
{
	const __u8 *p = h->buf, *end = h->buf + h->buffered;
	__u64 x;
	int i;

	if (h->total >= 32) {
		x = rustmig_rotl64(h->v[0], 1) + rustmig_rotl64(h->v[1], 7) +
		    rustmig_rotl64(h->v[2], 12) + rustmig_rotl64(h->v[3], 18);
		for (i = 0; i < 4; i++)
			x = rustmig_xxh64_merge(x, h->v[i]);
	} else {
		x = h->seed + RUSTMIG_XXH_P5;
	}
	x += h->total;
	for (; p + 8 <= end; p += 8) {
		x ^= rustmig_xxh64_round(0, rustmig_get64(p));
		x = rustmig_rotl64(x, 27) * RUSTMIG_XXH_P1 + RUSTMIG_XXH_P4;
	}
	if (p + 4 <= end) {
		x ^= (__u64)rustmig_get32(p) * RUSTMIG_XXH_P1;
		x = rustmig_rotl64(x, 23) * RUSTMIG_XXH_P2 + RUSTMIG_XXH_P3;
		p += 4;
	}
	for (; p < end; p++) {
		x ^= *p * RUSTMIG_XXH_P5;
		x = rustmig_rotl64(x, 11) * RUSTMIG_XXH_P1;
	}
	x ^= x >> 33;
	x *= RUSTMIG_XXH_P2;
	x ^= x >> 29;
	x *= RUSTMIG_XXH_P3;
	return x ^ (x >> 32);
}

/* The XXH64 of @len bytes with @seed: "123456789" gives 0x8cb841db40e6ae83. */
static inline __u64 rustmig_xxh64(const void *buf, size_t len, __u64 seed)
{
	struct rustmig_xxh64 h;

	rustmig_xxh64_init(&h, seed);
	rustmig_xxh64_update(&h, buf, len);
	return rustmig_xxh64_digest(&h);
}

/* The flags of the header at the start of @buf. */
static inline __u32 rustmig_header_flags(const void *buf)
{
	const __u8 *b = buf;

	return rustmig_get32(b + offsetof(struct rustmig_stream_header, flags));
}

/* The header_len field of the header at the start of @buf. */
static inline __u32 rustmig_header_len_field(const void *buf)
{
	const __u8 *b = buf;

	return rustmig_get32(b + offsetof(struct rustmig_stream_header, header_len));
}

/*
 * The CRC of the first @len bytes of @buf as a header's (@len >= 72): the
 * header_crc field taken as zero.
 */
static inline __u32 rustmig_header_crc(const void *buf, size_t len)
{
	static const __u8 zero[4];
	const __u8 *p = buf;
	__u32 crc = ~0U;

	crc = rustmig_crc32c_update(crc, p, RUSTMIG_STREAM_HEADER_CRC_OFFSET);
	crc = rustmig_crc32c_update(crc, zero, sizeof(zero));
	crc = rustmig_crc32c_update(crc, p + RUSTMIG_STREAM_HEADER_CRC_OFFSET + 4,
				    len - RUSTMIG_STREAM_HEADER_CRC_OFFSET - 4);
	return ~crc;
}

/*
 * Make the header_crc of the header at the start of the @avail-byte stream
 * @buf match its header_len bytes. A header_len a reader refuses anyway
 * (below 72 or above 4096), or longer than @avail, gets the CRC of the first
 * 72 bytes. The number of bytes the CRC covers.
 */
static inline size_t rustmig_header_fix_crc(void *buf, size_t avail)
{
	size_t len = rustmig_header_len_field(buf);

	if (len < RUSTMIG_STREAM_HEADER_LEN || len > RUSTMIG_STREAM_MAX_HEADER_LEN || len > avail)
		len = RUSTMIG_STREAM_HEADER_LEN;
	rustmig_put32((__u8 *)buf + RUSTMIG_STREAM_HEADER_CRC_OFFSET, rustmig_header_crc(buf, len));
	return len;
}

/*
 * The check value of the record whose header is at @rec and whose payload (of
 * the record header's len) at @payload, in a stream whose header has the flags
 * @hflags: with RUSTMIG_STREAM_RECORD_XXH64 the low 32 bits of the XXH64 of
 * the record header (its crc zero) and the payload, otherwise the CRC-32C of
 * tag, flags, len and the payload.
 */
static inline __u32 rustmig_record_crc(const void *rec, const void *payload, __u32 hflags)
{
	__u32 len = rustmig_get32((const __u8 *)rec + offsetof(struct rustmig_record_header, len));
	__u8 head[sizeof(struct rustmig_record_header)] = {};
	struct rustmig_xxh64 h;
	__u32 crc = ~0U;

	if (hflags & RUSTMIG_STREAM_RECORD_XXH64) {
		memcpy(head, rec, RUSTMIG_RECORD_CRC_COVERS);
		rustmig_xxh64_init(&h, 0);
		rustmig_xxh64_update(&h, head, sizeof(head));
		rustmig_xxh64_update(&h, payload, len);
		return (__u32)rustmig_xxh64_digest(&h);
	}
	crc = rustmig_crc32c_update(crc, rec, RUSTMIG_RECORD_CRC_COVERS);
	crc = rustmig_crc32c_update(crc, payload, len);
	return ~crc;
}

/*
 * Make the check value of the record at @rec, of a stream whose header has
 * the flags @hflags, match its tag, flags, len and the len bytes that follow
 * its header. False, and nothing changed, if those are not all within the
 * @avail bytes at @rec.
 */
static inline bool rustmig_record_fix_crc(void *rec, size_t avail, __u32 hflags)
{
	__u8 *p = rec;
	__u64 len;

	if (avail < sizeof(struct rustmig_record_header))
		return false;
	len = rustmig_get32(p + offsetof(struct rustmig_record_header, len));
	if (len > avail - sizeof(struct rustmig_record_header))
		return false;
	rustmig_put32(p + offsetof(struct rustmig_record_header, crc),
		      rustmig_record_crc(p, p + sizeof(struct rustmig_record_header), hflags));
	return true;
}

/* A record of a stream in memory, decoded. */
struct rustmig_rec {
	size_t off;	/* of its record header, from the start of the stream */
	__u32 tag;
	__u32 flags;
	__u32 len;	/* of its payload */
	__u32 crc;
	bool crc_ok;	/* whether @crc matches, as the stream's header flags say */
};

/* The whole length of @rec, its header included. */
static inline size_t rustmig_rec_size(const struct rustmig_rec *rec)
{
	return sizeof(struct rustmig_record_header) + rec->len;
}

/*
 * Decode the record at @off of the @len-byte stream @buf into @rec: false if
 * the stream ends before the whole record (header and payload).
 */
static inline bool rustmig_record_at(const void *buf, size_t len, size_t off,
				     struct rustmig_rec *rec)
{
	const __u8 *p = (const __u8 *)buf + off;

	if (off > len || len - off < sizeof(struct rustmig_record_header))
		return false;
	rec->off = off;
	rec->tag = rustmig_get32(p + offsetof(struct rustmig_record_header, tag));
	rec->flags = rustmig_get32(p + offsetof(struct rustmig_record_header, flags));
	rec->len = rustmig_get32(p + offsetof(struct rustmig_record_header, len));
	rec->crc = rustmig_get32(p + offsetof(struct rustmig_record_header, crc));
	if (rec->len > len - off - sizeof(struct rustmig_record_header))
		return false;
	rec->crc_ok = len >= RUSTMIG_STREAM_HEADER_LEN &&
		      rec->crc == rustmig_record_crc(p, p + sizeof(struct rustmig_record_header),
						     rustmig_header_flags(buf));
	return true;
}

/*
 * Walk the records of the @len-byte stream @buf, whose header is @header_len
 * bytes, into @recs (room for @max). Returns their number, the end record
 * included, if the records tile the stream exactly and the last one, and only
 * it, is the end record; -1 otherwise. CRCs are decoded (crc_ok), not
 * required.
 */
static inline int rustmig_walk(const void *buf, size_t len, size_t header_len,
			       struct rustmig_rec *recs, int max)
{
	size_t off = header_len;
	int n = 0;

	while (n < max && rustmig_record_at(buf, len, off, &recs[n])) {
		off += rustmig_rec_size(&recs[n]);
		if (recs[n++].tag == RUSTMIG_TAG_END)
			return off == len ? n : -1;
	}
	return -1;
}

#endif /* SELFTESTS_VFIO_RUSTMIG_STREAM_H */
