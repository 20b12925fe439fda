/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers of the VFIO migration v2 kselftests that act on a device opened
 * through the vfio selftests library: its registers, and a device state that
 * a test sets and then finds again (or not) after a migration.
 */
#ifndef SELFTESTS_VFIO_MIGRATION_DEVICE_H
#define SELFTESTS_VFIO_MIGRATION_DEVICE_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include <libvfio.h>

#include "migration_util.h"

/* Region writes and reads of a BAR register: they work whether or not it is mmapped. */
static inline int bar_write32(struct vfio_pci_device *device, int bar, __u64 reg, __u32 value)
{
	ssize_t n = pwrite(device->fd, &value, 4, device->bars[bar].info.offset + reg);

	return n == 4 ? 0 : -errno;
}

static inline int bar_write64(struct vfio_pci_device *device, int bar, __u64 reg, __u64 value)
{
	ssize_t n = pwrite(device->fd, &value, 8, device->bars[bar].info.offset + reg);

	return n == 8 ? 0 : -errno;
}

static inline __u32 bar_read32(struct vfio_pci_device *device, int bar, __u64 reg)
{
	__u32 value = ~0U;

	if (pread(device->fd, &value, 4, device->bars[bar].info.offset + reg) != 4)
		return ~0U;
	return value;
}

static inline __u64 bar_read64(struct vfio_pci_device *device, int bar, __u64 reg)
{
	__u64 value = ~0ULL;

	if (pread(device->fd, &value, 8, device->bars[bar].info.offset + reg) != 8)
		return ~0ULL;
	return value;
}

/* Whether @device is QEMU's edu, whose state is registers of BAR0. */
static inline bool is_edu(struct vfio_pci_device *device)
{
	return vfio_pci_config_readw(device, PCI_VENDOR_ID) == 0x1234 &&
	       vfio_pci_config_readw(device, PCI_DEVICE_ID) == 0x11e8;
}

/*
 * Whether the state that @device migrates is its hardware's, which a test can
 * set and read back: not so for a driver that migrates a state of its own
 * (VFIO_MIGRATION_TEST_STATE=driver, e.g. the Rust sample's emulated
 * registers).
 */
static inline bool hardware_state(void)
{
	return !env_is("VFIO_MIGRATION_TEST_STATE", "driver");
}

/*
 * Give @device a state that @seed picks and that a reset does not leave:
 * edu's liveness and DMA registers, or every byte of the state BAR
 * (VFIO_MIGRATION_TEST_BAR, mmapped). 0, -ENOENT when the test knows no state
 * of this device, or -errno.
 */
static inline int perturb_state(struct vfio_pci_device *device, __u32 seed)
{
	const char *bar_env = getenv("VFIO_MIGRATION_TEST_BAR");
	int bar, ret;

	if (!hardware_state())
		return -ENOENT;
	if (is_edu(device)) {
		ret = bar_write32(device, 0, 0x04, 0x12345678 ^ seed);	/* liveness */
		/* DMA source, destination, count: not started. */
		ret = ret ?: bar_write32(device, 0, 0x80, 0x40000 + (seed & 0xff) * 8);
		ret = ret ?: bar_write32(device, 0, 0x88, 0x41000 + (seed & 0xff) * 8);
		return ret ?: bar_write32(device, 0, 0x90, 0x80 + (seed & 0x7f));
	}
	if (!bar_env)
		return -ENOENT;
	bar = atoi(bar_env);
	if (bar < 0 || bar > 5 || !device->bars[bar].vaddr)
		return -ENOENT;
	memset(device->bars[bar].vaddr, 0x5a ^ seed, device->bars[bar].info.size);
	/* ivshmem-plain: its interrupt mask and status (BAR0) migrate too. */
	if (vfio_pci_config_readw(device, PCI_VENDOR_ID) == 0x1af4 &&
	    vfio_pci_config_readw(device, PCI_DEVICE_ID) == 0x1110) {
		ret = bar_write32(device, 0, 0x0, 0xa5 ^ seed);
		return ret ?: bar_write32(device, 0, 0x4, 0x5a ^ seed);
	}
	return 0;
}

/* Whether two streams are the same bytes; the first that differs goes to @at. */
static inline bool same_stream(const char *a, long long a_len, const char *b, long long b_len,
			       long long *at)
{
	for (*at = 0; *at < a_len && *at < b_len && a[*at] == b[*at]; (*at)++)
		;
	return a_len == b_len && *at == a_len;
}

/*
 * edu's registers that its migration state holds (every register rustmig's edu
 * backend saves), as a test reads them back: 4 bytes each, the low half of
 * the 8-byte DMA registers. The DMA command is saved but not restored (edu
 * accepts only a write that starts a transfer): a device keeps its own.
 */
static const __u64 edu_state_regs[] = {
	0x04,	/* liveness */
	0x08,	/* factorial */
	0x20,	/* status */
	0x24,	/* interrupt status */
	0x80,	/* DMA source */
	0x88,	/* DMA destination */
	0x90,	/* DMA count */
	0x98,	/* DMA command */
};

/* Read edu's state registers into @regs (by region reads): 0, or -errno. */
static inline int edu_read_state(struct vfio_pci_device *device,
				 __u32 regs[ARRAY_SIZE(edu_state_regs)])
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(edu_state_regs); i++)
		if (pread(device->fd, &regs[i], 4,
			  device->bars[0].info.offset + edu_state_regs[i]) != 4)
			return -errno;
	return 0;
}

/* The first of edu_state_regs at which @a and @b differ, or ARRAY_SIZE(edu_state_regs). */
static inline size_t edu_state_diff(const __u32 a[ARRAY_SIZE(edu_state_regs)],
				    const __u32 b[ARRAY_SIZE(edu_state_regs)])
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(edu_state_regs) && a[i] == b[i]; i++)
		;
	return i;
}

#endif /* SELFTESTS_VFIO_MIGRATION_DEVICE_H */
