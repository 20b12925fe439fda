/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The migration stream of the rustmig vfio-pci variant driver.
 *
 * A stream is what the data_fd of a rustmig device gives in STOP_COPY (and
 * PRE_COPY) and takes in RESUMING: a header, then records, then an end
 * record. Every integer is little endian. A reader checks the header before
 * any record reaches the device, and a record's check value before it applies
 * it.
 *
 * The header's CRC is a CRC-32C (Castagnoli, reflected, initial value ~0,
 * final XOR ~0: "123456789" gives 0xe3069283). A record's check value is a
 * CRC-32C too, unless the header has %RUSTMIG_STREAM_RECORD_XXH64 set.
 *
 * Compatibility: a reader accepts a stream whose major version is its own
 * and any minor version. A newer minor version may only lengthen the header
 * (header_len; the CRC covers all of it) and add optional records. Unknown
 * flags in the header, and records with an unknown tag and the MANDATORY flag,
 * are refused; optional records with an unknown tag are skipped.
 *
 * Documentation/driver-api/vfio-pci-rustmig.rst has the byte-level layout,
 * the errno of every refusal and the rules for two devices to be compatible.
 */
#ifndef _UAPI_LINUX_VFIO_RUSTMIG_H
#define _UAPI_LINUX_VFIO_RUSTMIG_H

#include <linux/types.h>

/* The bytes "RMIG", read as a little-endian u32. */
#define RUSTMIG_STREAM_MAGIC		0x47494d52
#define RUSTMIG_STREAM_VERSION_MAJOR	1
#define RUSTMIG_STREAM_VERSION_MINOR	1
/*
 * Header flag (version 1.1 and 2.1): every record's check value is the low
 * 32 bits of the XXH64 (seed 0, as the kernel's xxh64() computes it) of the
 * record's header, with its crc field zero, followed by its payload. XXH64
 * runs several times faster than CRC-32C where no instruction computes the
 * CRC, and can be computed as the data is copied. A reader of version 1.0
 * refuses such a stream (EOPNOTSUPP: a flag it does not know); a reader of
 * version 1.1 reads both.
 */
#define RUSTMIG_STREAM_RECORD_XXH64	(1U << 0)
/*
 * Version 2.0 is the stream of a save that started in PRE_COPY on a device
 * whose memory is read while it runs: its header is version 1.0's with
 * payload_len 0 (the length is not known in advance), and its section records
 * may come in any order and more than once, the last one of a byte winning.
 * Each covers whole pages of %RUSTMIG_STREAM_PAGE_SIZE bytes from an offset
 * that is a multiple of it, or runs to the end of its section; at the end
 * record every page of every section must have come at least once. Every
 * other stream is version 1.0, whose section records come in order, once.
 * A reader of version 1 only refuses version 2 (another major version).
 */
#define RUSTMIG_STREAM_VERSION_MAJOR_PRECOPY	2
#define RUSTMIG_STREAM_PAGE_SIZE		4096
/* The header length of version 1.0, and the longest header accepted. */
#define RUSTMIG_STREAM_HEADER_LEN	72
#define RUSTMIG_STREAM_MAX_HEADER_LEN	4096
#define RUSTMIG_BACKEND_NAME_LEN	16

/**
 * struct rustmig_stream_header - the start of a stream
 * @magic: %RUSTMIG_STREAM_MAGIC
 * @version_major: the stream format's major version
 * @version_minor: the stream format's minor version
 * @header_len: the length of the header, >= %RUSTMIG_STREAM_HEADER_LEN
 * @flags: %RUSTMIG_STREAM_RECORD_XXH64 or none: a reader refuses a header
 *         with any flag it does not know
 * @vendor: the PCI vendor id of the device the stream was saved from
 * @device: its PCI device id
 * @subsystem_vendor: its PCI subsystem vendor id
 * @subsystem_device: its PCI subsystem id
 * @class_rev: its class code and revision, as config space dword 0x08
 * @backend_major: the major version of the backend's state format
 * @backend_minor: the minor version of the backend's state format
 * @backend: the backend's name, NUL padded
 * @state_size: the size of the device state, in bytes: the sum of the
 *              sections' lengths
 * @payload_len: the length of the stream after the header, end record
 *               included; 0 in version 2.0, whose length is not known
 * @header_crc: the CRC-32C of the @header_len header bytes, computed with
 *              this field zero
 * @reserved: zero
 */
struct rustmig_stream_header {
	__le32 magic;
	__le16 version_major;
	__le16 version_minor;
	__le32 header_len;
	__le32 flags;
	__le16 vendor;
	__le16 device;
	__le16 subsystem_vendor;
	__le16 subsystem_device;
	__le32 class_rev;
	__le16 backend_major;
	__le16 backend_minor;
	__u8 backend[RUSTMIG_BACKEND_NAME_LEN];
	__le64 state_size;
	__le64 payload_len;
	__le32 header_crc;
	__le32 reserved;
};

/* The byte offset of header_crc in the header. */
#define RUSTMIG_STREAM_HEADER_CRC_OFFSET	64

/* The tag of the end record, the last record of every stream. */
#define RUSTMIG_TAG_END			0
/*
 * Tags from 1 to 0x7fffffff name sections of a backend's device state; tags
 * from 0x80000000 are common to all backends.
 */
#define RUSTMIG_TAG_COMMON		0x80000000

/* A reader that does not know the record's tag must refuse the stream. */
#define RUSTMIG_RECORD_MANDATORY	(1U << 0)
/* The largest record payload: a section offset and 64 KiB of data. */
#define RUSTMIG_RECORD_MAX_LEN		(8 + 65536)

/**
 * struct rustmig_record_header - the header of a record
 * @tag: what the payload is: %RUSTMIG_TAG_END or a section's tag
 * @flags: %RUSTMIG_RECORD_MANDATORY, no other flag is defined
 * @len: the length of the payload that follows, at most
 *       %RUSTMIG_RECORD_MAX_LEN; 0 for the end record
 * @crc: the record's check value: the CRC-32C of @tag, @flags and @len
 *       (their 12 bytes) followed by the payload, or with
 *       %RUSTMIG_STREAM_RECORD_XXH64 the low 32 bits of the XXH64 of the
 *       16-byte record header (this field zero) followed by the payload
 *
 * The payload of a section record is a &struct rustmig_section_record.
 */
struct rustmig_record_header {
	__le32 tag;
	__le32 flags;
	__le32 len;
	__le32 crc;
};

/**
 * struct rustmig_section_record - the payload of a section record
 * @offset: where @data goes in the section
 * @data: the section's bytes from @offset, at most 64 KiB
 *
 * In version 1.0 a section travels in order, as records of 64 KiB of data
 * but the last; in version 2.0 see %RUSTMIG_STREAM_VERSION_MAJOR_PRECOPY.
 */
struct rustmig_section_record {
	__le64 offset;
	__u8 data[];
};

/* The sections of the ivshmem backend ("ivshmem", 1af4:1110). */
#define RUSTMIG_IVSHMEM_TAG_REGS	1	/* BAR0: INTRMASK, INTRSTATUS */
#define RUSTMIG_IVSHMEM_TAG_MEM		2	/* BAR2, the shared memory */
/* The section of the edu backend ("edu", 1234:11e8). */
#define RUSTMIG_EDU_TAG_REGS		1	/* 12 BAR0 registers */

#endif /* _UAPI_LINUX_VFIO_RUSTMIG_H */
