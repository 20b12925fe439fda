// SPDX-License-Identifier: GPL-2.0-only
/*
 * The rustmig migration stream against malformed input: a resuming rustmig
 * device must refuse every stream it may not load, with the errno its
 * documentation gives (Documentation/driver-api/vfio-pci-rustmig.rst), go to
 * ERROR until a reset, and leave the device untouched when it refuses a
 * header. It must accept what a newer minor version of the format may write.
 *
 * Usage: vfio_pci_migration_stream_test [harness options] SEGMENT:BUS:DEVICE.FUNCTION
 *
 * The device is bound to rustmig_vfio_pci, and VFIO_MIGRATION_TEST_STREAM=rustmig
 * says so (the device cases skip without it). From the environment:
 *   VFIO_MIGRATION_TEST_BAR=N          the BAR holding the device's memory
 *                                      (ivshmem: 2), compared after every
 *                                      stream refused at its header and
 *                                      every stream accepted;
 *   VFIO_MIGRATION_TEST_FOREIGN=BDF    a device of another identity, bound
 *                                      to rustmig too, whose stream this
 *                                      device must refuse;
 *   VFIO_MIGRATION_STREAMS=N           how many streams to try (10000);
 *   VFIO_MIGRATION_RANDOM_STREAMS=N    instead: every systematic stream
 *                                      (each variant of each forgery class
 *                                      once), then N random ones;
 *   VFIO_MIGRATION_TEST_SEED=N         the seed of the streams (1): stream i
 *                                      of a seed is always the same;
 *   VFIO_MIGRATION_TEST_SAVE=FILE      where to keep the valid stream the
 *                                      malformed ones are made from.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include <linux/bits.h>
#include <linux/compiler.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"
#include "migration_util.h"
#include "migration_device.h"
#include "rustmig_stream.h"

static const char *device_bdf;

/* The number in the environment variable @name, or @def if it is unset. */
static unsigned long long env_number(const char *name, unsigned long long def)
{
	const char *s = getenv(name);
	unsigned long long v;
	char *end;

	if (!s)
		return def;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || !*s || *end) {
		fprintf(stderr, "bad %s '%s'\n", name, s);
		exit(KSFT_FAIL);
	}
	return v;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* The next number of the generator @s (splitmix64: any seed will do). */
static __u64 rnd(__u64 *s)
{
	__u64 z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fill_random(char *p, size_t n, __u64 *rng)
{
	__u64 v;

	for (; n >= 8; p += 8, n -= 8) {
		v = rnd(rng);
		memcpy(p, &v, 8);
	}
	v = rnd(rng);
	memcpy(p, &v, n);
}

/* The first byte at which @n bytes of the BAR mapping @mem and @want differ, or @n. */
static size_t mem_mismatch(const char *mem, const char *want, size_t n)
{
	size_t i;

	if (!memcmp(mem, want, n))
		return n;
	for (i = 0; i < n && mem[i] == want[i]; i++)
		;
	return i;
}

/* The values of header_crc and the other CRCs are the ones the uAPI defines. */
TEST(crc32c_matches_the_reference)
{
	/* RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of ones, ascending, descending. */
	static const __u32 iscsi[] = { 0x8a9136aa, 0x62a8ab43, 0x46dd794e, 0x113fdb5c };
	char buf[4096], rec[16 + 40];
	__u64 rng = 1;
	size_t i, j;
	__u32 crc;

	ASSERT_EQ(0xe3069283, rustmig_crc32c("123456789", 9));
	ASSERT_EQ(0xe3069283, ~rustmig_crc32c_bitwise(~0U, "123456789", 9));
	ASSERT_EQ(0, rustmig_crc32c("", 0));
	for (i = 0; i < ARRAY_SIZE(iscsi); i++) {
		for (j = 0; j < 32; j++)
			buf[j] = i == 0 ? 0 : i == 1 ? 0xff : i == 2 ? j : 31 - j;
		ASSERT_EQ(iscsi[i], rustmig_crc32c(buf, 32));
	}

	/* The table is the bitwise definition, and the CRC runs over pieces. */
	fill_random(buf, sizeof(buf), &rng);
	ASSERT_EQ(rustmig_crc32c_bitwise(~0U, buf, sizeof(buf)),
		  rustmig_crc32c_update(~0U, buf, sizeof(buf)));
	for (i = 0; i < 64; i++) {
		j = rnd(&rng) % sizeof(buf);
		crc = rustmig_crc32c_update(~0U, buf, j);
		crc = rustmig_crc32c_update(crc, buf + j, sizeof(buf) - j);
		ASSERT_EQ(rustmig_crc32c(buf, sizeof(buf)), ~crc);
	}

	/* A header's CRC takes its own field as zero and covers header_len bytes. */
	fill_random(buf, sizeof(buf), &rng);
	rustmig_put32(buf + offsetof(struct rustmig_stream_header, header_len), 80);
	ASSERT_EQ(80, rustmig_header_fix_crc(buf, sizeof(buf)));
	crc = rustmig_get32(buf + RUSTMIG_STREAM_HEADER_CRC_OFFSET);
	rustmig_put32(buf + RUSTMIG_STREAM_HEADER_CRC_OFFSET, 0);
	ASSERT_EQ(rustmig_crc32c(buf, 80), crc);
	buf[80] ^= 1;
	ASSERT_EQ(crc, rustmig_header_crc(buf, 80));
	buf[79] ^= 1;
	ASSERT_NE(crc, rustmig_header_crc(buf, 80));
	/* A header_len a reader refuses anyway: the first 72 bytes. */
	rustmig_put32(buf + offsetof(struct rustmig_stream_header, header_len), 4097);
	ASSERT_EQ(RUSTMIG_STREAM_HEADER_LEN, rustmig_header_fix_crc(buf, sizeof(buf)));

	/* A record's CRC: its tag, flags and len, then its payload. */
	fill_random(rec, sizeof(rec), &rng);
	rustmig_put32(rec + offsetof(struct rustmig_record_header, len), 40);
	ASSERT_TRUE(rustmig_record_fix_crc(rec, sizeof(rec), 0));
	memcpy(buf, rec, 12);
	memcpy(buf + 12, rec + 16, 40);
	ASSERT_EQ(rustmig_crc32c(buf, 52), rustmig_get32(rec + 12));
	ASSERT_FALSE(rustmig_record_fix_crc(rec, sizeof(rec) - 1, 0));

	/* With RUSTMIG_STREAM_RECORD_XXH64: the XXH64 of the header, its crc zero, and payload. */
	ASSERT_TRUE(rustmig_record_fix_crc(rec, sizeof(rec), RUSTMIG_STREAM_RECORD_XXH64));
	memcpy(buf, rec, sizeof(rec));
	memset(buf + 12, 0, 4);
	ASSERT_EQ((__u32)rustmig_xxh64(buf, sizeof(rec), 0), rustmig_get32(rec + 12));
}

/* XXH64 as lib/xxhash.c's xxh64() computes it, whole and in pieces. */
TEST(xxh64_matches_the_kernels)
{
	struct rustmig_xxh64 h;
	__u64 rng = 7, want;
	char buf[100];
	size_t i, j;

	ASSERT_EQ(0xef46db3751d8e999ULL, rustmig_xxh64("", 0, 0));
	ASSERT_EQ(0x44bc2cf5ad770999ULL, rustmig_xxh64("abc", 3, 0));
	ASSERT_EQ(0x8cb841db40e6ae83ULL, rustmig_xxh64("123456789", 9, 0));
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = i * 7 + 3;
	ASSERT_EQ(0xa61f8d4c170fe531ULL, rustmig_xxh64(buf, 100, 0));
	ASSERT_EQ(0xf6d8f65c625abb4fULL, rustmig_xxh64(buf, 100, 0x9e3779b97f4a7c15ULL));
	ASSERT_EQ(0x50a7cfc7ba588784ULL, rustmig_xxh64(buf, 33, 0));
	ASSERT_EQ(0x1b47cb8243cc8e32ULL, rustmig_xxh64(buf, 15, 0));
	want = rustmig_xxh64(buf, sizeof(buf), 0);
	for (i = 0; i < 64; i++) {
		j = rnd(&rng) % sizeof(buf);
		rustmig_xxh64_init(&h, 0);
		rustmig_xxh64_update(&h, buf, j);
		rustmig_xxh64_update(&h, buf + j, sizeof(buf) - j);
		ASSERT_EQ(want, rustmig_xxh64_digest(&h));
	}
}

FIXTURE(migration_stream) {
	struct iommu *iommu;
	struct vfio_pci_device *device;
};

FIXTURE_SETUP(migration_stream)
{
	self->iommu = iommu_init(MODE_IOMMUFD);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
}

FIXTURE_TEARDOWN(migration_stream)
{
	vfio_pci_device_cleanup(self->device);
	iommu_cleanup(self->iommu);
}

#define HOFF(field)	offsetof(struct rustmig_stream_header, field)
#define ROFF(field)	offsetof(struct rustmig_record_header, field)
#define REC_HDR		sizeof(struct rustmig_record_header)
#define REC_MAX		RUSTMIG_RECORD_MAX_LEN

/*
 * What becomes of a stream: accepted, written whole but incomplete (RESUMING
 * -> STOP fails with EINVAL), or refused by a write with one of the errnos.
 * An expectation is a set of these.
 */
#define OUT_ACCEPTED		BIT(0)
#define OUT_INCOMPLETE		BIT(1)
#define OUT_EINVAL		BIT(2)
#define OUT_EBADMSG		BIT(3)
#define OUT_EPROTONOSUPPORT	BIT(4)
#define OUT_EOPNOTSUPP		BIT(5)
#define OUT_EPROTO		BIT(6)
#define OUT_REFUSED		(((1U << 7) - 1) & ~OUT_ACCEPTED)

static const struct {
	int err;
	unsigned int out;
	const char *name;
} refusals[] = {
	{ EINVAL, OUT_EINVAL, "EINVAL" },
	{ EBADMSG, OUT_EBADMSG, "EBADMSG" },
	{ EPROTONOSUPPORT, OUT_EPROTONOSUPPORT, "EPROTONOSUPPORT" },
	{ EOPNOTSUPP, OUT_EOPNOTSUPP, "EOPNOTSUPP" },
	{ EPROTO, OUT_EPROTO, "EPROTO" },
};

/* The OUT_ bit of a write refused with @err, 0 if none. */
static unsigned int out_of_errno(int err)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(refusals); i++)
		if (refusals[i].err == err)
			return refusals[i].out;
	return 0;
}

/* @err by name: "ok" for 0, its symbol for a refusal, else "errno N". */
static const char *errno_name(int err, char *buf, size_t size)
{
	size_t i;

	if (!err)
		return "ok";
	for (i = 0; i < ARRAY_SIZE(refusals); i++)
		if (refusals[i].err == err)
			return refusals[i].name;
	snprintf(buf, size, "errno %d", err);
	return buf;
}

/* The names of the outcomes in @set, joined by '|'. */
static const char *outs_name(unsigned int set, char *buf, size_t size)
{
	size_t i, n = 0;

	buf[0] = 0;
	if (set & OUT_ACCEPTED)
		n += snprintf(buf + n, size - n, "|accepted");
	if (set & OUT_INCOMPLETE && n < size)
		n += snprintf(buf + n, size - n, "|incomplete");
	for (i = 0; i < ARRAY_SIZE(refusals) && n < size; i++)
		if (set & refusals[i].out)
			n += snprintf(buf + n, size - n, "|%s", refusals[i].name);
	return buf[0] ? buf + 1 : "nothing";
}

/* The stream saved from the device, from which every stream is forged. */
struct base {
	char *buf;
	size_t len;
	size_t hlen;			/* its header's length */
	__u64 payload_len;
	struct rustmig_rec *recs;	/* its records, the end record last */
	int nrec;
	__u32 tags[8];			/* its sections' tags, in stream order */
	int ntags;
};

/* A forged stream. */
struct mutant {
	char *buf;
	size_t len;
	size_t cap;
	const char *class;
	char what[160];		/* the mutation */
	unsigned int expect;	/* the outcomes allowed */
	bool header_stage;	/* refused (or cut) by its header, before any record */
};

/* Start @m as a copy of the saved stream. */
static void m_start(struct mutant *m, const struct base *b)
{
	memcpy(m->buf, b->buf, b->len);
	m->len = b->len;
	m->class = NULL;
	m->what[0] = 0;
	m->expect = 0;
	m->header_stage = false;
}

/* Insert @n bytes at @at of @m: a copy of @src, or random bytes. */
static void m_insert(struct mutant *m, size_t at, const void *src, size_t n, __u64 *rng)
{
	/* The capacity leaves room for the largest insertion. */
	if (m->len + n > m->cap)
		abort();
	memmove(m->buf + at + n, m->buf + at, m->len - at);
	if (src)
		memcpy(m->buf + at, src, n);
	else
		fill_random(m->buf + at, n, rng);
	m->len += n;
}

static void m_delete(struct mutant *m, size_t at, size_t n)
{
	memmove(m->buf + at, m->buf + at + n, m->len - at - n);
	m->len -= n;
}

/* Lengthen the header of @m by @n random extension bytes, as a newer minor version may. */
static void m_extend_header(struct mutant *m, size_t n, __u64 *rng)
{
	size_t hlen = rustmig_header_len_field(m->buf);

	m_insert(m, hlen, NULL, n, rng);
	rustmig_put32(m->buf + HOFF(header_len), hlen + n);
}

/* Add @delta to the payload_len of @m (the header CRC is not fixed). */
static void m_payload_len_add(struct mutant *m, long long delta)
{
	__u64 v = rustmig_get64(m->buf + HOFF(payload_len));

	rustmig_put64(m->buf + HOFF(payload_len), v + delta);
}

static void m_fix_header(struct mutant *m)
{
	rustmig_header_fix_crc(m->buf, m->len);
}

/* Insert at @at a record of @tag and @flags with @len random payload bytes, its CRC right. */
static void m_insert_record(struct mutant *m, size_t at, __u32 tag, __u32 flags, size_t len,
			    __u64 *rng)
{
	m_insert(m, at, NULL, REC_HDR + len, rng);
	rustmig_put32(m->buf + at + ROFF(tag), tag);
	rustmig_put32(m->buf + at + ROFF(flags), flags);
	rustmig_put32(m->buf + at + ROFF(len), len);
	rustmig_record_fix_crc(m->buf + at, m->len - at, rustmig_header_flags(m->buf));
}

/* A payload length from 1 byte to the largest, evenly spread over the orders of magnitude. */
static size_t random_len(__u64 *rng)
{
	size_t n = 1 + rnd(rng) % ((size_t)1 << (rnd(rng) % 17));

	return n < REC_MAX ? n : REC_MAX;
}

/* A record tag the device does not know. */
static __u32 unknown_tag(const struct base *b, __u64 *rng)
{
	static const __u32 tags[] = { 0x80000001, 0xfffffffe, 0x7ffffffe, 0x4000 };
	__u32 t;
	int i;

	for (;;) {
		t = tags[rnd(rng) % ARRAY_SIZE(tags)];
		for (i = 0; i < b->ntags && b->tags[i] != t; i++)
			;
		if (i == b->ntags)
			return t;
	}
}

/*
 * The records the systematic forgeries aim at: all of a short stream, else
 * the first three, the middle one and the last three (the end record last).
 */
static size_t ntargets(const struct base *b)
{
	return b->nrec <= 7 ? b->nrec : 7;
}

/*
 * Split @k into a record and one of @variants of a forgery: one of the
 * targets, or (@random) any record.
 */
static const struct rustmig_rec *pick(const struct base *b, size_t k, size_t variants,
				      bool random, __u64 *rng, size_t *variant)
{
	size_t j = k / variants;

	*variant = k % variants;
	if (random)
		return &b->recs[rnd(rng) % b->nrec];
	if (b->nrec <= 7)
		return &b->recs[j];
	return &b->recs[j < 3 ? j : j == 3 ? b->nrec / 2 : b->nrec - 7 + j];
}

/*
 * What a reader makes of the saved stream with bit @bit of its byte @pos, in
 * the header, flipped: magic and major version are checked before the CRC,
 * and header_len decides which bytes the CRC covers.
 */
static unsigned int header_flip_expect(const struct base *b, size_t pos, int bit)
{
	__u32 hlen;

	if (pos < HOFF(version_major))
		return OUT_EINVAL;
	if (pos < HOFF(version_minor))
		return OUT_EPROTONOSUPPORT;
	if (pos < HOFF(header_len) || pos >= HOFF(flags))
		return OUT_EBADMSG;
	hlen = b->hlen ^ (1U << ((pos - HOFF(header_len)) * 8 + bit));
	if (hlen < RUSTMIG_STREAM_HEADER_LEN || hlen > RUSTMIG_STREAM_MAX_HEADER_LEN)
		return OUT_EINVAL;
	/* A longer header takes in bytes of the records, if they are all there. */
	return hlen > b->len ? OUT_INCOMPLETE : OUT_EBADMSG;
}

/*
 * What a reader makes of the saved stream with bit @bit of its byte @pos,
 * after the header, flipped. The records before are good; this one's CRC no
 * longer matches, unless the flip made it a record that cannot even be
 * collected whole: longer than the largest, or than what payload_len leaves.
 * An end record with a payload, or unknown record flags, may be refused
 * before or after the CRC is checked.
 */
static unsigned int record_flip_expect(const struct base *b, size_t pos, int bit)
{
	const struct rustmig_rec *r = b->recs;
	size_t off;
	__u32 v;

	while (r + 1 < b->recs + b->nrec && r[1].off <= pos)
		r++;
	off = pos - r->off;
	if (off >= ROFF(crc))
		return OUT_EBADMSG;
	if (off >= ROFF(len)) {
		v = r->len ^ (1U << ((off - ROFF(len)) * 8 + bit));
		if (v > REC_MAX || r->tag == RUSTMIG_TAG_END)
			return OUT_EINVAL;
		if (r->off - b->hlen + REC_HDR + v > b->payload_len)
			return OUT_EINVAL | OUT_INCOMPLETE;
		return OUT_EBADMSG;
	}
	if (off >= ROFF(flags)) {
		v = r->flags ^ (1U << ((off - ROFF(flags)) * 8 + bit));
		return v & ~RUSTMIG_RECORD_MANDATORY ? OUT_EINVAL | OUT_EBADMSG : OUT_EBADMSG;
	}
	v = r->tag ^ (1U << (off * 8 + bit));
	return v == RUSTMIG_TAG_END && r->len ? OUT_EINVAL | OUT_EBADMSG : OUT_EBADMSG;
}

/*
 * The forgeries. Each takes @k below its count: the systematic streams go
 * through all of them in turn; past them (@random) each stream is a forgery
 * of a class drawn by weight, with random parameters. False if the variant
 * does not apply to this stream.
 */

/*
 * Streams the device must accept: what a newer minor version may write, and
 * the stream as version 1.0 wrote it.
 */
static size_t count_accepted(const struct base *b)
{
	return 9;
}

/* Make @m the stream version 1.0 writes: no header flag, CRC-32C records. */
static void m_to_version_1_0(struct mutant *m)
{
	size_t off = rustmig_header_len_field(m->buf);
	__u32 tag;

	rustmig_put16(m->buf + HOFF(version_minor), 0);
	rustmig_put32(m->buf + HOFF(flags), 0);
	while (off + REC_HDR <= m->len) {
		tag = rustmig_get32(m->buf + off + ROFF(tag));
		rustmig_record_fix_crc(m->buf + off, m->len - off, 0);
		off += REC_HDR + rustmig_get32(m->buf + off + ROFF(len));
		if (tag == RUSTMIG_TAG_END)
			break;
	}
}

static bool forge_accepted(const struct base *b, struct mutant *m, size_t k, bool random,
			   __u64 *rng)
{
	static const char * const what[] = {
		"the stream as saved",
		"version_minor + 1",
		"header_len + 8 with 8 extension bytes",
		"an optional record of tag 0x80000001 before the end record",
		"backend_minor + 1",
		"version_minor 0xffff, header_len 4096 with extension bytes",
		"an optional record of an unknown tag between records",
		"version_minor + 1, header_len + 8, an optional record, backend_minor + 1",
		"version 1.0: no header flag, every record's check value a CRC-32C",
	};
	size_t n = 0, at;

	if (k == 1 || k == 7)
		rustmig_put16(m->buf + HOFF(version_minor),
			      rustmig_get16(m->buf + HOFF(version_minor)) + 1);
	if (k == 4 || k == 7)
		rustmig_put16(m->buf + HOFF(backend_minor),
			      rustmig_get16(m->buf + HOFF(backend_minor)) + 1);
	if (k == 2 || k == 7)
		m_extend_header(m, 8, rng);
	if (k == 3 || k == 7) {
		/* Before the end record, the last 16 bytes. */
		n = rnd(rng) % 65;
		m_insert_record(m, m->len - REC_HDR, 0x80000001, 0, n, rng);
		m_payload_len_add(m, REC_HDR + n);
	}
	if (k == 5) {
		rustmig_put16(m->buf + HOFF(version_minor), 0xffff);
		m_extend_header(m, RUSTMIG_STREAM_MAX_HEADER_LEN - b->hlen, rng);
	}
	if (k == 6) {
		/* Anywhere between records (after the header), of any length. */
		at = b->recs[rnd(rng) % b->nrec].off;
		n = random_len(rng);
		m_insert_record(m, at, unknown_tag(b, rng), 0, n, rng);
		m_payload_len_add(m, REC_HDR + n);
	}
	if (k == 8)
		m_to_version_1_0(m);
	m_fix_header(m);
	m->expect = OUT_ACCEPTED;
	if (k == 3 || k == 6 || k == 7)
		snprintf(m->what, sizeof(m->what), "%s (%zu payload bytes), CRCs fixed",
			 what[k], n);
	else
		snprintf(m->what, sizeof(m->what), "%s, CRC fixed", what[k]);
	return true;
}

/* Streams cut within the header: every write accepted, the stream incomplete. */
static size_t count_cut_header(const struct base *b)
{
	return b->hlen;
}

static bool forge_cut_header(const struct base *b, struct mutant *m, size_t k, bool random,
			     __u64 *rng)
{
	m->len = k;
	m->expect = OUT_INCOMPLETE;
	m->header_stage = true;
	snprintf(m->what, sizeof(m->what), "cut after %zu bytes", k);
	return true;
}

/*
 * Streams cut within the records: at a record, one byte into it, after its
 * header, before its last byte.
 */
static size_t count_cut_records(const struct base *b)
{
	return ntargets(b) * 4;
}

static bool forge_cut_records(const struct base *b, struct mutant *m, size_t k, bool random,
			      __u64 *rng)
{
	size_t v, cut;
	const struct rustmig_rec *r = pick(b, k, 4, random, rng, &v);

	if (random)
		cut = b->hlen + rnd(rng) % (b->len - b->hlen);
	else
		cut = r->off + (v == 0 ? 0 : v == 1 ? 1 :
				v == 2 ? REC_HDR : rustmig_rec_size(r) - 1);
	if (cut >= b->len)
		return false;
	m->len = cut;
	m->expect = OUT_INCOMPLETE;
	m->header_stage = cut <= b->hlen;
	snprintf(m->what, sizeof(m->what), "cut after %zu bytes", cut);
	return true;
}

/* Every bit of the header flipped, the CRC left as it was. */
static size_t count_header_flips(const struct base *b)
{
	return b->hlen * 8;
}

static bool forge_header_flip(const struct base *b, struct mutant *m, size_t k, bool random,
			      __u64 *rng)
{
	size_t pos = k / 8;
	int bit = k % 8;

	m->buf[pos] ^= 1 << bit;
	m->expect = header_flip_expect(b, pos, bit);
	m->header_stage = true;
	snprintf(m->what, sizeof(m->what), "bit %d of header byte %zu flipped, CRC left", bit, pos);
	return true;
}

/* A header field set to a value, or lengthened by extension bytes. */
static const struct header_case {
	const char *what;
	size_t off;		/* of the field in the header */
	int size;		/* of the field: 1, 2, 4 or 8 bytes */
	enum { H_SET, H_ADD, H_EXTEND_TO } op;
	__u64 v;		/* the value set or added, or the header_len extended to */
	bool fix;		/* recompute the header CRC */
	unsigned int expect;
	bool header;		/* refused by the header checks */
} header_cases[] = {
	{ "magic 0", HOFF(magic), 4, H_SET, 0, true, OUT_EINVAL, true },
	{ "magic + 1", HOFF(magic), 4, H_ADD, 1, true, OUT_EINVAL, true },
	{ "version_major 0", HOFF(version_major), 2, H_SET, 0, true, OUT_EPROTONOSUPPORT, true },
	/* 2.0 (pre-copy) has no length: a 1.0 header relabelled 2.0 keeps one. */
	{ "version_major 2", HOFF(version_major), 2, H_SET, 2, true, OUT_EINVAL, true },
	{ "version_major 3", HOFF(version_major), 2, H_SET, 3, true, OUT_EPROTONOSUPPORT, true },
	{ "version_major 0xffff", HOFF(version_major), 2, H_SET, 0xffff, true,
	  OUT_EPROTONOSUPPORT, true },
	{ "version_minor + 1", HOFF(version_minor), 2, H_ADD, 1, true, OUT_ACCEPTED, false },
	{ "version_minor 0xffff", HOFF(version_minor), 2, H_SET, 0xffff, true, OUT_ACCEPTED,
	  false },
	{ "version_minor + 1", HOFF(version_minor), 2, H_ADD, 1, false, OUT_EBADMSG, true },
	{ "header_len 0", HOFF(header_len), 4, H_SET, 0, true, OUT_EINVAL, true },
	{ "header_len 71", HOFF(header_len), 4, H_SET, 71, true, OUT_EINVAL, true },
	{ "header_len 4097", HOFF(header_len), 4, H_SET, 4097, true, OUT_EINVAL, true },
	{ "header_len 0xffffffff", HOFF(header_len), 4, H_SET, 0xffffffff, true, OUT_EINVAL,
	  true },
	{ "header_len 80 with 8 extension bytes", 0, 0, H_EXTEND_TO, 80, true, OUT_ACCEPTED,
	  false },
	{ "header_len 80 with 8 extension bytes", 0, 0, H_EXTEND_TO, 80, false, OUT_EBADMSG,
	  true },
	{ "header_len 4096 with extension bytes", 0, 0, H_EXTEND_TO, 4096, true, OUT_ACCEPTED,
	  false },
	{ "header_len 4097 with extension bytes", 0, 0, H_EXTEND_TO, 4097, true, OUT_EINVAL,
	  true },
	{ "vendor + 1", HOFF(vendor), 2, H_ADD, 1, true, OUT_EPROTO, true },
	{ "device + 1", HOFF(device), 2, H_ADD, 1, true, OUT_EPROTO, true },
	{ "subsystem_vendor + 1", HOFF(subsystem_vendor), 2, H_ADD, 1, true, OUT_EPROTO, true },
	{ "subsystem_device + 1", HOFF(subsystem_device), 2, H_ADD, 1, true, OUT_EPROTO, true },
	{ "class_rev + 1", HOFF(class_rev), 4, H_ADD, 1, true, OUT_EPROTO, true },
	{ "class_rev + 0x100", HOFF(class_rev), 4, H_ADD, 0x100, true, OUT_EPROTO, true },
	{ "backend_major + 1", HOFF(backend_major), 2, H_ADD, 1, true, OUT_EPROTO, true },
	{ "backend_major 0", HOFF(backend_major), 2, H_SET, 0, true, OUT_EPROTO, true },
	{ "backend_minor + 1", HOFF(backend_minor), 2, H_ADD, 1, true, OUT_ACCEPTED, false },
	{ "backend_minor 0xffff", HOFF(backend_minor), 2, H_SET, 0xffff, true, OUT_ACCEPTED,
	  false },
	{ "backend name byte 0 + 1", HOFF(backend), 1, H_ADD, 1, true, OUT_EPROTO, true },
	{ "backend name byte 15 (padding) + 1", HOFF(backend) + 15, 1, H_ADD, 1, true,
	  OUT_EPROTO, true },
	{ "state_size + 1", HOFF(state_size), 8, H_ADD, 1, true, OUT_EPROTO, true },
	{ "state_size 0", HOFF(state_size), 8, H_SET, 0, true, OUT_EPROTO, true },
	{ "state_size 0xffffffffffffffff", HOFF(state_size), 8, H_SET, ~0ULL, true, OUT_EPROTO,
	  true },
	{ "payload_len 0", HOFF(payload_len), 8, H_SET, 0, true, OUT_EINVAL, true },
	{ "payload_len 16", HOFF(payload_len), 8, H_SET, 16, true, OUT_EINVAL, true },
	{ "payload_len - 1", HOFF(payload_len), 8, H_ADD, ~0ULL, true, OUT_EINVAL, true },
	/* Longer than the stream: refused at the end record, the records applied. */
	{ "payload_len + 1", HOFF(payload_len), 8, H_ADD, 1, true, OUT_EINVAL, false },
	{ "payload_len 0xffffffffffffffff", HOFF(payload_len), 8, H_SET, ~0ULL, true, OUT_EINVAL,
	  false },
	{ "header_crc + 1", HOFF(header_crc), 4, H_ADD, 1, false, OUT_EBADMSG, true },
	{ "header_crc 0", HOFF(header_crc), 4, H_SET, 0, false, OUT_EBADMSG, true },
};

static __u64 get_n(const char *p, int size)
{
	return size == 1 ? (__u8)*p : size == 2 ? rustmig_get16(p) :
	       size == 4 ? rustmig_get32(p) : rustmig_get64(p);
}

static void put_n(char *p, int size, __u64 v)
{
	if (size == 1)
		*p = v;
	else if (size == 2)
		rustmig_put16(p, v);
	else if (size == 4)
		rustmig_put32(p, v);
	else
		rustmig_put64(p, v);
}

/*
 * The header cases, then each header flag flipped, the CRC fixed: EOPNOTSUPP,
 * or EBADMSG at the first record for RUSTMIG_STREAM_RECORD_XXH64.
 */
static size_t count_header_fields(const struct base *b)
{
	return ARRAY_SIZE(header_cases) + 32;
}

static bool forge_header_field(const struct base *b, struct mutant *m, size_t k, bool random,
			       __u64 *rng)
{
	const struct header_case *c;

	if (k >= ARRAY_SIZE(header_cases)) {
		k -= ARRAY_SIZE(header_cases);
		rustmig_put32(m->buf + HOFF(flags), rustmig_header_flags(m->buf) ^ 1U << k);
		m_fix_header(m);
		if (1U << k == RUSTMIG_STREAM_RECORD_XXH64) {
			/* A known flag: the records' check values no longer match. */
			m->expect = OUT_EBADMSG;
			snprintf(m->what, sizeof(m->what),
				 "flags bit %zu (XXH64 record checks) flipped, CRC fixed", k);
			return true;
		}
		m->expect = OUT_EOPNOTSUPP;
		m->header_stage = true;
		snprintf(m->what, sizeof(m->what), "flags bit %zu, CRC fixed", k);
		return true;
	}
	c = &header_cases[k];
	if (c->op != H_EXTEND_TO) {
		put_n(m->buf + c->off, c->size,
		      (c->op == H_ADD ? get_n(m->buf + c->off, c->size) : 0) + c->v);
	} else if (c->v > b->hlen) {
		m_extend_header(m, c->v - b->hlen, rng);
	} else {
		return false;
	}
	if (c->fix)
		m_fix_header(m);
	m->expect = c->expect;
	m->header_stage = c->header;
	snprintf(m->what, sizeof(m->what), "%s, CRC %s", c->what, c->fix ? "fixed" : "left");
	return true;
}

/* The mutations of a record's header and payload. */
enum rec_kind {
	RK_LEN_0, RK_LEN_U32_MAX, RK_LEN_OVER_MAX, RK_LEN_LESS, RK_LEN_MORE, RK_FLAGS_BIT,
	RK_TAG_UNKNOWN_MANDATORY, RK_TAG_UNKNOWN_OPTIONAL, RK_TAG_END, RK_TAG_OTHER_SECTION,
	RK_OFFSET_WRONG, RK_OFFSET_NEAR_MAX, RK_CRC_FLIP, RK_PAYLOAD_FLIP, NR_REC_KINDS
};

/* Each record mutation, with the record's CRC recomputed and without. */
static size_t count_record_fields(const struct base *b)
{
	return ntargets(b) * NR_REC_KINDS * 2;
}

static bool forge_record_field(const struct base *b, struct mutant *m, size_t k, bool random,
			       __u64 *rng)
{
	size_t v, at;
	const struct rustmig_rec *r = pick(b, k, NR_REC_KINDS * 2, random, rng, &v);
	bool fix = v & 1, end = r->tag == RUSTMIG_TAG_END;
	enum rec_kind kind = v / 2;
	char *p = m->buf + r->off;
	__u64 offset = end ? 0 : rustmig_get64(p + REC_HDR);
	const char *what;
	int i, bit = -1;
	__u32 tag;

	switch (kind) {
	case RK_LEN_0:
		if (end)
			return false;
		what = "len 0";
		rustmig_put32(p + ROFF(len), 0);
		/* A section record's payload starts with its 8-byte offset. */
		m->expect = fix ? OUT_EINVAL : OUT_EBADMSG;
		break;
	case RK_LEN_U32_MAX:
		what = "len 0xffffffff";
		rustmig_put32(p + ROFF(len), 0xffffffff);
		m->expect = OUT_EINVAL;
		break;
	case RK_LEN_OVER_MAX:
		what = "len 8 + 64 KiB + 1";
		rustmig_put32(p + ROFF(len), REC_MAX + 1);
		m->expect = OUT_EINVAL;
		break;
	case RK_LEN_LESS:
		if (end)
			return false;
		what = "len - 1";
		rustmig_put32(p + ROFF(len), r->len - 1);
		m->expect = fix ? OUT_EINVAL : OUT_EBADMSG;
		break;
	case RK_LEN_MORE:
		if (end) {
			/* An end record with a payload, which follows it. */
			what = "len 8, with 8 payload bytes";
			rustmig_put32(p + ROFF(len), 8);
			m_insert(m, r->off + REC_HDR, NULL, 8, rng);
			m->expect = fix ? OUT_EINVAL : OUT_EINVAL | OUT_EBADMSG;
			break;
		}
		what = "len + 1";
		rustmig_put32(p + ROFF(len), r->len + 1);
		m->expect = r->len + 1 > REC_MAX ? OUT_EINVAL : fix ? OUT_EINVAL : OUT_EBADMSG;
		break;
	case RK_FLAGS_BIT:
		/* Bit 1 in the systematic streams, any undefined bit in the others. */
		bit = random ? 1 + rnd(rng) % 31 : 1;
		what = "an undefined flag";
		rustmig_put32(p + ROFF(flags), r->flags | 1U << bit);
		m->expect = fix ? OUT_EINVAL : OUT_EINVAL | OUT_EBADMSG;
		break;
	case RK_TAG_UNKNOWN_MANDATORY:
		tag = unknown_tag(b, rng);
		what = "an unknown tag, MANDATORY";
		rustmig_put32(p + ROFF(tag), tag);
		rustmig_put32(p + ROFF(flags), RUSTMIG_RECORD_MANDATORY);
		m->expect = fix ? OUT_EOPNOTSUPP : OUT_EBADMSG;
		break;
	case RK_TAG_UNKNOWN_OPTIONAL:
		tag = unknown_tag(b, rng);
		what = "an unknown tag, optional";
		rustmig_put32(p + ROFF(tag), tag);
		rustmig_put32(p + ROFF(flags), 0);
		/*
		 * Skipped: the section then lacks this record's data, or the
		 * stream its end record.
		 */
		m->expect = !fix ? OUT_EBADMSG : end ? OUT_INCOMPLETE : OUT_EINVAL;
		break;
	case RK_TAG_END:
		if (end)
			return false;
		what = "tag END (with its payload)";
		rustmig_put32(p + ROFF(tag), RUSTMIG_TAG_END);
		m->expect = fix ? OUT_EINVAL : OUT_EINVAL | OUT_EBADMSG;
		break;
	case RK_TAG_OTHER_SECTION:
		for (i = 0; i < b->ntags && b->tags[i] == r->tag; i++)
			;
		if (i == b->ntags)
			return false;
		what = "another section's tag";
		rustmig_put32(p + ROFF(tag), b->tags[i]);
		m->expect = fix ? OUT_EINVAL : OUT_EBADMSG;
		break;
	case RK_OFFSET_WRONG:
		if (end)
			return false;
		what = "a wrong section offset";
		rustmig_put64(p + REC_HDR, offset + 1 + rnd(rng) % 0x20000);
		m->expect = fix ? OUT_EINVAL : OUT_EBADMSG;
		break;
	case RK_OFFSET_NEAR_MAX:
		if (end)
			return false;
		what = "a section offset near 2^64";
		rustmig_put64(p + REC_HDR, ~0ULL - rnd(rng) % 0x10000);
		m->expect = fix ? OUT_EINVAL : OUT_EBADMSG;
		break;
	case RK_CRC_FLIP:
		if (fix)
			return false;
		bit = rnd(rng) % 32;
		what = "a flipped CRC bit";
		rustmig_put32(p + ROFF(crc), r->crc ^ 1U << bit);
		m->expect = OUT_EBADMSG;
		break;
	case RK_PAYLOAD_FLIP:
		/* With the CRC fixed it would be another valid stream. */
		if (fix || end)
			return false;
		at = REC_HDR + rnd(rng) % r->len;
		bit = rnd(rng) % 8;
		what = "a flipped payload bit";
		p[at] ^= 1 << bit;
		m->expect = OUT_EBADMSG;
		break;
	default:
		return false;
	}
	if (fix)
		rustmig_record_fix_crc(p, m->len - r->off, rustmig_header_flags(m->buf));
	at = snprintf(m->what, sizeof(m->what), "record %d (tag %#x, len %u, offset %#llx): %s",
		      (int)(r - b->recs), r->tag, r->len, (unsigned long long)offset, what);
	if (bit >= 0 && at < sizeof(m->what))
		at += snprintf(m->what + at, sizeof(m->what) - at, " (bit %d)", bit);
	if (at < sizeof(m->what))
		snprintf(m->what + at, sizeof(m->what) - at, ", CRC %s", fix ? "fixed" : "left");
	return true;
}

/* Random bit flips anywhere in the stream: one, or two to eight. */
static size_t count_flips(const struct base *b)
{
	return 1;
}

static bool forge_flips(const struct base *b, struct mutant *m, size_t k, bool random,
			__u64 *rng)
{
	int n = rnd(rng) % 2 ? 1 : 2 + rnd(rng) % 7, i, j, bit[8];
	size_t pos[8], w;

	w = snprintf(m->what, sizeof(m->what), "%d bit(s) flipped:", n);
	m->header_stage = true;
	for (i = 0; i < n; i++) {
		/* Distinct bits, or two flips could undo each other. */
		do {
			pos[i] = rnd(rng) % b->len;
			bit[i] = rnd(rng) % 8;
			for (j = 0; j < i && (pos[j] != pos[i] || bit[j] != bit[i]); j++)
				;
		} while (j < i);
		m->buf[pos[i]] ^= 1 << bit[i];
		m->header_stage &= pos[i] < b->hlen;
		if (w < sizeof(m->what))
			w += snprintf(m->what + w, sizeof(m->what) - w, " byte %zu bit %d",
				      pos[i], bit[i]);
	}
	if (n > 1)
		m->expect = OUT_REFUSED;
	else if (pos[0] < b->hlen)
		m->expect = header_flip_expect(b, pos[0], bit[0]);
	else
		m->expect = record_flip_expect(b, pos[0], bit[0]);
	return true;
}

/* A record repeated right after itself, payload_len left or fixed. */
static size_t count_dups(const struct base *b)
{
	return ntargets(b) * 2;
}

static bool forge_dup(const struct base *b, struct mutant *m, size_t k, bool random, __u64 *rng)
{
	size_t fix;
	const struct rustmig_rec *r = pick(b, k, 2, random, rng, &fix);
	size_t size = rustmig_rec_size(r);

	m_insert(m, r->off + size, b->buf + r->off, size, NULL);
	if (fix) {
		m_payload_len_add(m, size);
		m_fix_header(m);
	}
	/* The section's offset again, or a byte after the end record. */
	m->expect = OUT_EINVAL;
	snprintf(m->what, sizeof(m->what), "record %d (tag %#x) twice, payload_len %s",
		 (int)(r - b->recs), r->tag, fix ? "fixed" : "left");
	return true;
}

/* A record dropped, payload_len left or fixed. */
static size_t count_drops(const struct base *b)
{
	return ntargets(b) * 2;
}

static bool forge_drop(const struct base *b, struct mutant *m, size_t k, bool random,
		       __u64 *rng)
{
	size_t fix;
	const struct rustmig_rec *r = pick(b, k, 2, random, rng, &fix);
	size_t size = rustmig_rec_size(r);

	m_delete(m, r->off, size);
	if (fix) {
		/* Then too short for the device's state: refused by the header. */
		m_payload_len_add(m, -(long long)size);
		m_fix_header(m);
		m->expect = OUT_EINVAL;
		m->header_stage = true;
	} else {
		/* The section lacks its data; without its end, the stream lacks nothing else. */
		m->expect = r->tag == RUSTMIG_TAG_END ? OUT_INCOMPLETE : OUT_EINVAL;
	}
	snprintf(m->what, sizeof(m->what), "record %d (tag %#x) dropped, payload_len %s",
		 (int)(r - b->recs), r->tag, fix ? "fixed" : "left");
	return true;
}

/* Two records swapped: neighbours, or any two. */
static size_t count_swaps(const struct base *b)
{
	return ntargets(b) - 1;
}

static bool forge_swap(const struct base *b, struct mutant *m, size_t k, bool random,
		       __u64 *rng)
{
	size_t v, rs, ss;
	const struct rustmig_rec *r = pick(b, k, 1, random, rng, &v), *s = r + 1, *t;
	char *p;

	if (random)
		s = &b->recs[rnd(rng) % b->nrec];
	if (s < r) {
		t = r;
		r = s;
		s = t;
	}
	if (s == r || s >= b->recs + b->nrec)
		return false;
	rs = rustmig_rec_size(r);
	ss = rustmig_rec_size(s);
	p = m->buf + r->off;
	memcpy(p, b->buf + s->off, ss);
	p += ss;
	memcpy(p, b->buf + r->off + rs, s->off - r->off - rs);
	p += s->off - r->off - rs;
	memcpy(p, b->buf + r->off, rs);
	/* A section out of order, or the end record early. */
	m->expect = OUT_EINVAL;
	snprintf(m->what, sizeof(m->what), "records %d (tag %#x) and %d (tag %#x) swapped",
		 (int)(r - b->recs), r->tag, (int)(s - b->recs), s->tag);
	return true;
}

/* Bytes after the end record: one, another end record, up to 4 KiB; payload_len left or fixed. */
static size_t count_trailers(const struct base *b)
{
	return 6;
}

static bool forge_trailer(const struct base *b, struct mutant *m, size_t k, bool random,
			  __u64 *rng)
{
	size_t n = k / 2 == 0 ? 1 : k / 2 == 1 ? REC_HDR : 1 + rnd(rng) % 4096;
	bool fix = k % 2;

	m_insert(m, m->len, k / 2 == 1 ? b->buf + b->len - REC_HDR : NULL, n, rng);
	if (fix) {
		m_payload_len_add(m, n);
		m_fix_header(m);
	}
	m->expect = OUT_EINVAL;
	snprintf(m->what, sizeof(m->what), "%zu %s after the end record, payload_len %s", n,
		 k / 2 == 1 ? "bytes (another end record)" : "random bytes",
		 fix ? "fixed" : "left");
	return true;
}

/* A zero-length record inserted before a record. */
static size_t count_empty(const struct base *b)
{
	return ntargets(b) * 5;
}

static bool forge_empty(const struct base *b, struct mutant *m, size_t k, bool random,
			__u64 *rng)
{
	static const char * const what[] = {
		"of a section's tag, MANDATORY", "of an unknown tag, MANDATORY",
		"of an unknown tag, optional", "of an unknown tag, optional",
		"of tag END",
	};
	static const unsigned int expect[] = {
		OUT_EINVAL, OUT_EOPNOTSUPP, OUT_ACCEPTED, OUT_EINVAL, OUT_EINVAL,
	};
	size_t v;
	const struct rustmig_rec *r = pick(b, k, 5, random, rng, &v);
	__u32 tag = v == 0 ? b->tags[rnd(rng) % b->ntags] : v == 4 ? RUSTMIG_TAG_END :
		    unknown_tag(b, rng);

	m_insert_record(m, r->off, tag, v == 2 || v == 3 ? 0 : RUSTMIG_RECORD_MANDATORY, 0, rng);
	if (v != 3) {
		m_payload_len_add(m, REC_HDR);
		m_fix_header(m);
	}
	m->expect = expect[v];
	snprintf(m->what, sizeof(m->what),
		 "a zero-length record %s (%#x) before record %d, payload_len %s",
		 what[v], tag, (int)(r - b->recs), v == 3 ? "left" : "fixed");
	return true;
}

/* An optional record of an unknown tag inserted before a record. */
static size_t count_optional(const struct base *b)
{
	return ntargets(b) * 4;
}

static bool forge_optional(const struct base *b, struct mutant *m, size_t k, bool random,
			   __u64 *rng)
{
	static const char * const what[] = {
		"", ", longer than the largest", ", its CRC wrong", ", payload_len left",
	};
	static const unsigned int expect[] = {
		OUT_ACCEPTED, OUT_EINVAL, OUT_EBADMSG, OUT_EINVAL,
	};
	size_t v, n;
	const struct rustmig_rec *r = pick(b, k, 4, random, rng, &v);
	__u32 tag = unknown_tag(b, rng);

	n = v == 1 ? REC_MAX + 1 : random_len(rng);
	m_insert_record(m, r->off, tag, 0, n, rng);
	if (v == 2)
		m->buf[r->off + ROFF(crc)] ^= 1 << (rnd(rng) % 8);
	if (v != 3) {
		m_payload_len_add(m, REC_HDR + n);
		m_fix_header(m);
	}
	m->expect = expect[v];
	snprintf(m->what, sizeof(m->what),
		 "an optional record of tag %#x and %zu bytes before record %d%s",
		 tag, n, (int)(r - b->recs), what[v]);
	return true;
}

static const struct forger {
	const char *name;
	size_t (*count)(const struct base *b);
	bool (*forge)(const struct base *b, struct mutant *m, size_t k, bool random, __u64 *rng);
	unsigned int weight;	/* of the class among the random streams */
} forgers[] = {
	{ "accepted", count_accepted, forge_accepted, 4 },
	{ "cut in the header", count_cut_header, forge_cut_header, 3 },
	{ "cut in the records", count_cut_records, forge_cut_records, 4 },
	{ "header bit", count_header_flips, forge_header_flip, 10 },
	{ "header field", count_header_fields, forge_header_field, 10 },
	{ "record field", count_record_fields, forge_record_field, 16 },
	{ "random bits", count_flips, forge_flips, 25 },
	{ "duplicated record", count_dups, forge_dup, 4 },
	{ "dropped record", count_drops, forge_drop, 4 },
	{ "swapped records", count_swaps, forge_swap, 4 },
	{ "bytes after the end", count_trailers, forge_trailer, 4 },
	{ "zero-length record", count_empty, forge_empty, 6 },
	{ "optional record", count_optional, forge_optional, 6 },
};

/* The number of systematic streams: every variant of every class, once. */
static size_t systematic_streams(const struct base *b)
{
	size_t f, n = 0;

	for (f = 0; f < ARRAY_SIZE(forgers); f++)
		n += forgers[f].count(b);
	return n;
}

/* Forge stream @i into @m: false if there is no such stream, try the next. */
static bool forge(const struct base *b, struct mutant *m, size_t i, __u64 *rng)
{
	unsigned int w, total = 0;
	size_t f, n;

	m_start(m, b);
	for (f = 0; f < ARRAY_SIZE(forgers); f++) {
		n = forgers[f].count(b);
		if (i < n) {
			m->class = forgers[f].name;
			return forgers[f].forge(b, m, i, false, rng);
		}
		i -= n;
	}
	for (f = 0; f < ARRAY_SIZE(forgers); f++)
		total += forgers[f].weight;
	w = rnd(rng) % total;
	for (f = 0; w >= forgers[f].weight; f++)
		w -= forgers[f].weight;
	m->class = forgers[f].name;
	return forgers[f].forge(b, m, rnd(rng) % forgers[f].count(b), true, rng);
}

/*
 * The length of the next write of a stream, at @off with @left bytes to go,
 * in @mode: the whole stream at once (0), a few bytes at a time through the
 * first 4 KiB (1), or any length from 1 byte to 1 MiB, evenly spread over
 * the orders of magnitude.
 */
static size_t piece(__u64 *rng, int mode, size_t off, size_t left)
{
	size_t n;

	if (mode == 0)
		n = left;
	else if (mode == 1 && off < 4096)
		n = 1 + rnd(rng) % 17;
	else
		n = 1 + rnd(rng) % ((size_t)1 << (rnd(rng) % 21));
	return n < left ? n : left;
}

/* What became of one stream. */
struct result {
	size_t writes;		/* write() calls */
	int err;		/* the errno of the first write refused, or 0 */
	size_t err_off;		/* where the bytes of that write started */
	size_t err_len;		/* and how many there were */
	int again;		/* the errno of the write after it, or 0 */
	bool short_write;	/* a write took part of its bytes: never expected */
	int stop;		/* RESUMING -> STOP: 0 or -errno */
	__u32 state;		/* the state after it */
};

/*
 * Write @m in a new resuming session of the device @fd, in random pieces,
 * up to the first refused write and one more, then request STOP. 0, or the
 * -errno of RESUMING that could not be reached.
 */
static int resume(int fd, const struct mutant *m, __u64 *rng, struct result *res)
{
	int mode = rnd(rng) % 8, load_fd, ret;
	size_t off, n;
	ssize_t w;

	memset(res, 0, sizeof(*res));
	ret = set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd);
	if (ret)
		return ret;
	for (off = 0; off < m->len; off += w) {
		n = piece(rng, mode, off, m->len - off);
		res->writes++;
		w = write(load_fd, m->buf + off, n);
		if (w <= 0) {
			res->err = w ? errno : EIO;
			res->err_off = off;
			res->err_len = n;
			break;
		}
		if ((size_t)w != n)
			res->short_write = true;
	}
	if (res->err) {
		/* A refused stream stays refused: the next write, or one past the end. */
		off = res->err_off + res->err_len;
		n = off < m->len ? piece(rng, mode, off, m->len - off) : 1;
		w = write(load_fd, off < m->len ? m->buf + off : m->buf, n);
		res->again = w < 0 ? errno : 0;
	}
	res->stop = set_state(fd, VFIO_DEVICE_STATE_STOP, NULL);
	res->state = get_state(fd);
	close(load_fd);
	return 0;
}

/*
 * The outcome of a stream, 0 if it is none: a refusal is reported by a write
 * and every later one, RESUMING -> STOP fails with it into ERROR.
 */
static unsigned int outcome(const struct result *res)
{
	if (res->short_write)
		return 0;
	if (res->err) {
		if (res->again != res->err || res->stop != -res->err ||
		    res->state != VFIO_DEVICE_STATE_ERROR)
			return 0;
		return out_of_errno(res->err);
	}
	if (!res->stop)
		return res->state == VFIO_DEVICE_STATE_STOP ? OUT_ACCEPTED : 0;
	if (res->stop == -EINVAL && res->state == VFIO_DEVICE_STATE_ERROR)
		return OUT_INCOMPLETE;
	return 0;
}

/* The header length a reader takes from the header of @m. */
static size_t header_len_of(const struct mutant *m)
{
	size_t hlen;

	if (m->len < RUSTMIG_STREAM_HEADER_LEN)
		return RUSTMIG_STREAM_HEADER_LEN;
	hlen = rustmig_header_len_field(m->buf);
	return hlen < RUSTMIG_STREAM_HEADER_LEN || hlen > RUSTMIG_STREAM_MAX_HEADER_LEN ?
	       RUSTMIG_STREAM_HEADER_LEN : hlen;
}

/*
 * Whether the stream went no further than its header: its class says so, the
 * errno can only come from the header checks, or no byte after the header
 * reached the device before the refusal (or at all).
 */
/* Report stream @i, mutant @m, as wrong: one line, its prefix and @fmt. */
static __printf(3, 4)
void wrong_stream(size_t i, const struct mutant *m, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ksft_print_msg("stream %zu, %s: %s: %s", i, m->class, m->what, msg);
}

static bool refused_at_header(const struct mutant *m, const struct result *res)
{
	size_t hlen = header_len_of(m);

	if (m->header_stage || res->err == EPROTO || res->err == EPROTONOSUPPORT)
		return true;
	return res->err ? res->err_off + res->err_len <= hlen : m->len <= hlen;
}

/* Check what the device made of the stream saved from it. */
static void check_base(struct __test_metadata *_metadata, struct base *b, const char *saved,
		       size_t size, int bar)
{
	const struct rustmig_rec *r;
	size_t total = 0, n;
	__u64 off;
	int i;

	ASSERT_GT(b->len, RUSTMIG_STREAM_HEADER_LEN + REC_HDR);
	ASSERT_EQ(RUSTMIG_STREAM_MAGIC, rustmig_get32(b->buf + HOFF(magic)));
	ASSERT_EQ(RUSTMIG_STREAM_VERSION_MAJOR, rustmig_get16(b->buf + HOFF(version_major)));
	b->hlen = rustmig_header_len_field(b->buf);
	ASSERT_GE(b->hlen, RUSTMIG_STREAM_HEADER_LEN);
	ASSERT_LE(b->hlen, RUSTMIG_STREAM_MAX_HEADER_LEN);
	ASSERT_LT(b->hlen, b->len);
	ASSERT_EQ(rustmig_header_crc(b->buf, b->hlen),
		  rustmig_get32(b->buf + RUSTMIG_STREAM_HEADER_CRC_OFFSET))
		TH_LOG("the device's header_crc is not the CRC-32C of its header");
	/* The device saves version 1.1: its records checked by XXH64. */
	ASSERT_EQ(RUSTMIG_STREAM_RECORD_XXH64, rustmig_get32(b->buf + HOFF(flags)));
	ASSERT_EQ(1, rustmig_get16(b->buf + HOFF(version_minor)));
	b->payload_len = rustmig_get64(b->buf + HOFF(payload_len));
	ASSERT_EQ(b->len - b->hlen, b->payload_len);

	b->recs = calloc(b->len / REC_HDR, sizeof(*b->recs));
	ASSERT_NE(NULL, b->recs);
	b->nrec = rustmig_walk(b->buf, b->len, b->hlen, b->recs, b->len / REC_HDR);
	ASSERT_GT(b->nrec, 1) TH_LOG("the device's records do not end with the end record");
	for (i = 0; i < b->nrec; i++) {
		r = &b->recs[i];
		ASSERT_TRUE(r->crc_ok) TH_LOG("record %d: its check value does not match it", i);
		ASSERT_EQ(RUSTMIG_RECORD_MANDATORY, r->flags);
		if (r->tag == RUSTMIG_TAG_END)
			break;
		ASSERT_GE(r->len, 8 + 1);
		if (!b->ntags || b->tags[b->ntags - 1] != r->tag) {
			ASSERT_LT(b->ntags, ARRAY_SIZE(b->tags));
			b->tags[b->ntags++] = r->tag;
		}
	}
	ASSERT_EQ(b->nrec - 1, i);

	/* ivshmem's memory is section 2: the stream carries what the BAR held. */
	if (bar != 2 || strncmp(b->buf + HOFF(backend), "ivshmem", RUSTMIG_BACKEND_NAME_LEN))
		return;
	for (i = 0; i < b->nrec; i++) {
		r = &b->recs[i];
		if (r->tag != RUSTMIG_IVSHMEM_TAG_MEM)
			continue;
		off = rustmig_get64(b->buf + r->off + REC_HDR);
		n = r->len - 8;
		ASSERT_EQ(total, off);
		ASSERT_LE(off + n, size);
		ASSERT_EQ(0, memcmp(saved + off, b->buf + r->off + REC_HDR + 8, n))
			TH_LOG("the stream's memory differs from the BAR's at %llu",
			       (unsigned long long)off);
		total += n;
	}
	ASSERT_EQ(size, total);
}

/*
 * Thousands of streams forged from one saved from the device, each written in
 * random pieces into a resuming session: truncations, flipped bits, header
 * fields and record fields set to edge values (their CRC recomputed or not),
 * records repeated, dropped, swapped, inserted, bytes after the end. Every
 * one must end as the rules say: accepted (and then the device holds the
 * saved state), or refused with the errno of the rule it breaks (the set of
 * errnos when the order of two checks is the reader's choice) by a write and
 * every later one, or taken whole but incomplete; a refused stream leaves the
 * device in ERROR until a reset, and one refused at its header leaves the
 * device's memory as it was.
 */
TEST_F_TIMEOUT(migration_stream, malformed_streams_are_refused, 3600)
{
	const char *bar_env = getenv("VFIO_MIGRATION_TEST_BAR");
	const char *save_to = getenv("VFIO_MIGRATION_TEST_SAVE");
	unsigned long long n_streams = env_number("VFIO_MIGRATION_STREAMS", 10000);
	unsigned long long seed = env_number("VFIO_MIGRATION_TEST_SEED", 1);
	unsigned long counts[7] = {}, tried = 0, refused = 0, wrong = 0, at_header = 0;
	char *saved = NULL, *before = NULL, e1[16], e2[16], e3[16], s1[96], s2[96];
	__u32 edu_saved[ARRAY_SIZE(edu_state_regs)], edu_before[ARRAY_SIZE(edu_state_regs)];
	__u32 edu_now[ARRAY_SIZE(edu_state_regs)];
	bool edu = is_edu(self->device) && hardware_state();
	int fd = self->device->fd, bar = -1, ret;
	bool dirty = false, header;
	struct mutant m = {};
	struct base b = {};
	char *mem = NULL;
	struct result res;
	unsigned int out;
	size_t i, size = 0, at;
	long long len;
	double t0;
	__u64 rng;

	if (!env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
		SKIP(return, "not a rustmig stream");

	/* The memory BAR holds a pattern of the seed when the stream is saved. */
	if (bar_env) {
		bar = atoi(bar_env);
		mem = self->device->bars[bar].vaddr;
		ASSERT_NE(NULL, mem);
		size = self->device->bars[bar].info.size;
		saved = malloc(size);
		before = malloc(size);
		ASSERT_NE(NULL, saved);
		ASSERT_NE(NULL, before);
		rng = seed;
		fill_random(saved, size, &rng);
		memcpy(mem, saved, size);
	}
	/* edu: its registers hold a state of the seed when the stream is saved. */
	if (edu) {
		ASSERT_EQ(0, perturb_state(self->device, seed));
		ASSERT_EQ(0, edu_read_state(self->device, edu_saved));
	}
	b.buf = save_stream(fd, &len);
	ASSERT_NE(NULL, b.buf);
	b.len = len;
	check_base(_metadata, &b, saved, size, bar);
	if (save_to) {
		FILE *f = fopen(save_to, "w");

		ASSERT_NE(NULL, f) TH_LOG("%s: %s", save_to, strerror(errno));
		ASSERT_EQ(1, fwrite(b.buf, len, 1, f));
		ASSERT_EQ(0, fclose(f));
	}
	if (mem) {
		ASSERT_EQ(size, mem_mismatch(mem, saved, size));
		/* Then something else, which only an accepted stream may undo. */
		memset(mem, 0x3c, size);
		memcpy(before, mem, size);
		ASSERT_NE(0, memcmp(before, saved, size));
	}
	if (edu) {
		ASSERT_EQ(0, perturb_state(self->device, ~seed));
		ASSERT_EQ(0, edu_read_state(self->device, edu_before));
		ASSERT_NE(0, memcmp(edu_before, edu_saved, sizeof(edu_saved)));
	}

	m.cap = b.len + 4 * (REC_HDR + REC_MAX + 1) + 2 * RUSTMIG_STREAM_MAX_HEADER_LEN;
	m.buf = malloc(m.cap);
	ASSERT_NE(NULL, m.buf);
	if (getenv("VFIO_MIGRATION_RANDOM_STREAMS"))
		n_streams = systematic_streams(&b) +
			    env_number("VFIO_MIGRATION_RANDOM_STREAMS", 0);
	ksft_print_msg("%s: %llu streams of seed %llu from a %zu-byte stream of %d records,\n",
		       device_bdf, n_streams, seed, b.len, b.nrec);
	ksft_print_msg("the first %zu of them systematic\n", systematic_streams(&b));

	t0 = now();
	for (i = 0; tried < n_streams; i++) {
		rng = seed ^ (i * 0xd1342543de82ef95ULL);
		if (!forge(&b, &m, i, &rng))
			continue;
		if (++tried % 1000 == 0)
			ksft_print_msg("%lu streams, %lu wrong\n", tried, wrong);
		if (mem && dirty) {
			memset(mem, 0x3c, size);
			dirty = false;
		}
		if (edu && dirty) {
			ASSERT_EQ(0, perturb_state(self->device, ~seed));
			dirty = false;
		}
		ret = resume(fd, &m, &rng, &res);
		ASSERT_EQ(0, ret) TH_LOG("stream %zu: RUNNING -> RESUMING: %s", i, strerror(-ret));
		out = outcome(&res);
		if (!(out & m.expect)) {
			if (wrong++ < 30) {
				wrong_stream(i, &m, "want %s, got %s: %zu write(s) of %zu bytes,\n",
					     outs_name(m.expect, s1, sizeof(s1)),
					     outs_name(out, s2, sizeof(s2)), res.writes, m.len);
				ksft_print_msg("  %s at %zu+%zu, then %s; to STOP: %s, then %s\n",
					       errno_name(res.err, e1, sizeof(e1)), res.err_off,
					       res.err_len, errno_name(res.again, e2, sizeof(e2)),
					       errno_name(-res.stop, e3, sizeof(e3)),
					       state_name(res.state));
			}
		}
		for (at = 0; at < ARRAY_SIZE(counts); at++)
			counts[at] += !!(out & (1U << at));

		if (!res.stop) {
			ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL))
				TH_LOG("stream %zu: STOP -> RUNNING", i);
			ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
			/* An accepted stream restored the saved state. */
			dirty = true;
			at = mem ? mem_mismatch(mem, saved, size) : size;
			if (at != size && wrong++ < 30)
				wrong_stream(i, &m, "accepted, but BAR%d differs at %zu\n",
					     bar, at);
			if (edu) {
				ASSERT_EQ(0, edu_read_state(self->device, edu_now));
				if (memcmp(edu_now, edu_saved, sizeof(edu_now)) && wrong++ < 30)
					wrong_stream(i, &m, "accepted, edu's registers differ\n");
			}
			continue;
		}
		ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL))
			TH_LOG("stream %zu: VFIO_DEVICE_RESET: %s", i, strerror(errno));
		ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd)) TH_LOG("stream %zu", i);
		header = refused_at_header(&m, &res);
		at_header += header;
		/* Unless it was refused at its header, records may have reached the device. */
		at = mem && header ? mem_mismatch(mem, before, size) : size;
		dirty = !header || at != size;
		if (at != size && wrong++ < 30)
			wrong_stream(i, &m,
				     "refused at the header (%s at %zu+%zu), but BAR%d changed at %zu\n",
				     errno_name(res.err, e1, sizeof(e1)), res.err_off, res.err_len,
				     bar, at);
		if (edu && header) {
			ASSERT_EQ(0, edu_read_state(self->device, edu_now));
			at = 0;
			while (at < ARRAY_SIZE(edu_now) && edu_now[at] == edu_before[at])
				at++;
			dirty = at != ARRAY_SIZE(edu_now);
			if (dirty && wrong++ < 30)
				wrong_stream(i, &m,
					     "refused at the header (%s at %zu+%zu), but edu's %#llx is %#x, was %#x\n",
					     errno_name(res.err, e1, sizeof(e1)),
					     res.err_off, res.err_len,
					     edu_state_regs[at], edu_now[at], edu_before[at]);
		}
	}
	for (at = 1; at < ARRAY_SIZE(counts); at++)
		refused += counts[at];
	ksft_print_msg("%lu streams tried: %lu accepted, %lu refused, %lu of them at the header;\n",
		       tried, counts[0], refused, at_header);
	ksft_print_msg("EINVAL %lu, EBADMSG %lu, EPROTONOSUPPORT %lu, EOPNOTSUPP %lu,\n",
		       counts[2], counts[3], counts[4], counts[5]);
	ksft_print_msg("EPROTO %lu, incomplete %lu; %.1f ms per stream; %lu wrong\n",
		       counts[6], counts[1], (now() - t0) * 1000 / (tried ? tried : 1), wrong);
	ASSERT_EQ(0, wrong);
	free(m.buf);
	free(b.recs);
	free(b.buf);
	free(saved);
	free(before);
}

/*
 * A stream saved from a device of another identity (another kind, or another
 * state size) is refused by the write that completes its header, with
 * EPROTO; nothing reaches the device, which goes to ERROR until a reset.
 */
TEST_F(migration_stream, foreign_stream_is_refused)
{
	const char *foreign_bdf = getenv("VFIO_MIGRATION_TEST_FOREIGN");
	const char *bar_env = getenv("VFIO_MIGRATION_TEST_BAR");
	int fd = self->device->fd, load_fd, bar = -1;
	struct vfio_pci_device *foreign;
	struct iommu *foreign_iommu;
	__u32 edu_before[ARRAY_SIZE(edu_state_regs)], edu_now[ARRAY_SIZE(edu_state_regs)];
	char *ours, *theirs, *before = NULL;
	long long len, our_len;
	size_t size = 0, hlen;

	if (!env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
		SKIP(return, "not a rustmig stream");
	if (!foreign_bdf)
		SKIP(return, "VFIO_MIGRATION_TEST_FOREIGN not set");
	foreign_iommu = iommu_init(MODE_IOMMUFD);
	foreign = vfio_pci_device_init(foreign_bdf, foreign_iommu);
	theirs = save_stream(foreign->fd, &len);
	ASSERT_NE(NULL, theirs);
	ours = save_stream(fd, &our_len);
	ASSERT_NE(NULL, ours);
	hlen = rustmig_header_len_field(theirs);
	ASSERT_GE(hlen, RUSTMIG_STREAM_HEADER_LEN);
	ASSERT_LT(hlen, len);
	/* The identity: from the vendor id to the state size, but backend_minor. */
	ASSERT_TRUE(memcmp(ours + HOFF(vendor), theirs + HOFF(vendor),
			   HOFF(backend_minor) - HOFF(vendor)) ||
		    memcmp(ours + HOFF(backend), theirs + HOFF(backend),
			   HOFF(payload_len) - HOFF(backend)))
		TH_LOG("%s has the identity of %s: not a foreign device", foreign_bdf, device_bdf);

	if (bar_env) {
		bar = atoi(bar_env);
		ASSERT_NE(NULL, self->device->bars[bar].vaddr);
		size = self->device->bars[bar].info.size;
		before = malloc(size);
		ASSERT_NE(NULL, before);
		memset(self->device->bars[bar].vaddr, 0x96, size);
		memcpy(before, self->device->bars[bar].vaddr, size);
	}

	if (is_edu(self->device) && hardware_state()) {
		ASSERT_EQ(0, perturb_state(self->device, 0x96));
		ASSERT_EQ(0, edu_read_state(self->device, edu_before));
	}

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_EQ(hlen - 1, write(load_fd, theirs, hlen - 1));
	ASSERT_EQ(-1, write(load_fd, theirs + hlen - 1, len - hlen + 1));
	ASSERT_EQ(EPROTO, errno);
	ASSERT_EQ(-1, write(load_fd, theirs + hlen, 1));
	ASSERT_EQ(EPROTO, errno);
	ASSERT_EQ(-EPROTO, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(fd));
	close(load_fd);
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
	if (before)
		ASSERT_EQ(0, memcmp(before, self->device->bars[bar].vaddr, size));
	if (is_edu(self->device) && hardware_state()) {
		ASSERT_EQ(0, edu_read_state(self->device, edu_now));
		ASSERT_EQ(0, memcmp(edu_before, edu_now, sizeof(edu_now)));
	}

	free(before);
	free(ours);
	free(theirs);
	vfio_pci_device_cleanup(foreign);
	iommu_cleanup(foreign_iommu);
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
