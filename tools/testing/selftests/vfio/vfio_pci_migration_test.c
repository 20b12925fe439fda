// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VFIO migration v2 uAPI of a vfio-pci (variant) device.
 *
 * Usage: vfio_pci_migration_test [harness options] SEGMENT:BUS:DEVICE.FUNCTION|UUID
 *
 * The device is opened through its vfio cdev and an iommufd. The expected
 * migration capabilities of the bound driver come from the environment:
 * VFIO_MIGRATION_TEST_FLAGS, the VFIO_MIGRATION_* flags the device must
 * advertise ("none" when it must not support migration at all).
 *
 * Optional, for the driver under test:
 *   VFIO_MIGRATION_TEST_FENCE=1     the BARs are fenced off (mmap faults raise
 *                                   SIGBUS, region read/write fail with EIO)
 *                                   while the device is stopped;
 *   VFIO_MIGRATION_TEST_STREAM=rustmig  streams have rustmig's header, which
 *                                   RESUMING checks as soon as it arrives;
 *   VFIO_MIGRATION_TEST_PEER=BDF    a second device of the same kind, for the
 *                                   round trip from this device to it;
 *   VFIO_MIGRATION_TEST_BAR=N       the BAR holding the state that the round
 *                                   trip fills with a pattern and compares;
 *   VFIO_MIGRATION_TEST_DMA_LOG=M   the device's DMA dirty logging: "none" (not
 *                                   offered), "clean" (offered, the device does
 *                                   no DMA) or "edu" (offered, an edu whose DMA
 *                                   transfers must be reported page by page; its
 *                                   BAR0 cannot be mmapped);
 *   VFIO_MIGRATION_TEST_STATE=driver the driver migrates a state of its own, not
 *                                   the device's registers or memory, so the
 *                                   tests cannot set it (the Rust sample);
 *   VFIO_MIGRATION_TEST_PRECOPY_END=0  PRE_COPY's temporary end of stream reads
 *                                   as 0 instead of ENOMSG (mtty does, against
 *                                   the uAPI);
 *   VFIO_MIGRATION_TEST_DATA_SIZE=estimate  MIG_DATA_SIZE is an estimate, at
 *                                   least what is left, not exact (the uAPI
 *                                   allows it; mtty);
 *   VFIO_MIGRATION_TEST_RESUMING_IOCTL=ENOTTY  PRECOPY_INFO on a resuming
 *                                   data_fd fails with ENOTTY, not EINVAL (mtty);
 *   VFIO_MIGRATION_TEST_POLL=0      the data_fd has no poll (the uAPI asks for
 *                                   none; mtty): an ended session is seen by an
 *                                   empty read or write failing with ENODEV.
 *
 * The device may be named by its BDF or, for an mdev device such as the mtty
 * sample, by its UUID.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <linux/compiler.h>
#include <linux/pci_regs.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"
#include "migration_util.h"
#include "migration_device.h"
#include "rustmig_stream.h"

static const char *device_bdf;

FIXTURE(migration) {
	struct iommu *iommu;
	struct vfio_pci_device *device;
	long want_flags;
};

FIXTURE_SETUP(migration)
{
	self->iommu = iommu_init(MODE_IOMMUFD);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
	self->want_flags = expected_migration_flags();
}

FIXTURE_TEARDOWN(migration)
{
	vfio_pci_device_cleanup(self->device);
	iommu_cleanup(self->iommu);
}

/* The device fd is a working vfio-pci device, as with vfio-pci itself. */
TEST_F(migration, device_info_is_vfio_pci)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };

	ASSERT_EQ(0, ioctl(self->device->fd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
	ASSERT_GE(info.num_regions, VFIO_PCI_CONFIG_REGION_INDEX + 1);
	ASSERT_GE(info.num_irqs, VFIO_PCI_MSIX_IRQ_INDEX + 1);
}

/* A hexadecimal attribute of the device in sysfs, or -1. */
static long sysfs_hex(const char *attr)
{
	unsigned int v;
	char path[256];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", device_bdf, attr);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fscanf(f, "%x", &v);
	fclose(f);
	return n == 1 ? (long)v : -1;
}

/* Config space reads through the device match the ids sysfs shows. */
TEST_F(migration, config_space_ids_match_sysfs)
{
	long vendor, device;

	if (strchr(device_bdf, '-'))
		SKIP(return, "an mdev device has no PCI device in sysfs");
	vendor = sysfs_hex("vendor");
	device = sysfs_hex("device");

	ASSERT_GE(vendor, 0);
	ASSERT_GE(device, 0);
	ASSERT_EQ(vendor, vfio_pci_config_readw(self->device, PCI_VENDOR_ID));
	ASSERT_EQ(device, vfio_pci_config_readw(self->device, PCI_DEVICE_ID));
}

/* VFIO_DEVICE_FEATURE_MIGRATION answers exactly the expected flags. */
TEST_F(migration, migration_feature_matches_expected_flags)
{
	struct vfio_device_feature_migration mig = {};
	int fd = self->device->fd;
	int probe, ret;

	if (self->want_flags < 0)
		SKIP(return, "VFIO_MIGRATION_TEST_FLAGS not set");

	probe = device_feature(fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
			       VFIO_DEVICE_FEATURE_MIGRATION, NULL, 0);
	ret = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
			     &mig, sizeof(mig));
	if (self->want_flags == 0) {
		ASSERT_EQ(-ENOTTY, probe);
		ASSERT_EQ(-ENOTTY, ret);
		return;
	}
	ASSERT_EQ(0, probe);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(self->want_flags, (long)mig.flags);
	ASSERT_TRUE(mig.flags & VFIO_MIGRATION_STOP_COPY);
}

/*
 * MIG_DEVICE_STATE and MIG_DATA_SIZE exist exactly when migration is
 * supported; without it both answer -ENOTTY.
 */
TEST_F(migration, state_and_data_size_follow_migration_support)
{
	struct vfio_device_feature_mig_state state = {};
	struct vfio_device_feature_mig_data_size size = {};
	int fd = self->device->fd;
	int ret_state, ret_size;

	if (self->want_flags < 0)
		SKIP(return, "VFIO_MIGRATION_TEST_FLAGS not set");

	ret_state = device_feature(fd,
				   VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
				   &state, sizeof(state));
	ret_size = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
				  &size, sizeof(size));
	if (self->want_flags == 0) {
		ASSERT_EQ(-ENOTTY, ret_state);
		ASSERT_EQ(-ENOTTY, ret_size);
		return;
	}
	ASSERT_EQ(0, ret_state);
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, state.device_state);
	ASSERT_EQ(0, ret_size);
	ASSERT_NE(0, size.stop_copy_length);
}

/*
 * A STOP_COPY stream read in odd-sized reads has exactly MIG_DATA_SIZE bytes,
 * ends with read() == 0 (never -ENOMSG), is a read-only stream, dies with its
 * session, and is accepted back through RESUMING in 1..N byte writes.
 */
TEST_F(migration, stop_copy_stream_round_trips_through_resuming)
{
	int fd = self->device->fd, save_fd, load_fd;
	struct vfio_precopy_info info;
	long long size, total;
	size_t off, n;
	char *buf;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");
	buf = malloc(STREAM_CAP);
	ASSERT_NE(NULL, buf);

	size = data_size(fd);
	ASSERT_GT(size, 0);
	ASSERT_LE(size, STREAM_CAP);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	ASSERT_EQ(VFIO_DEVICE_STATE_STOP_COPY, get_state(fd));
	ASSERT_EQ(-EINVAL, precopy_info(save_fd, &info));

	total = read_all(save_fd, buf, STREAM_CAP, 7);
	ASSERT_EQ(size, total);
	ASSERT_EQ(0, read(save_fd, buf, 1));
	ASSERT_EQ(-1, pread(save_fd, buf, 1, 0));
	ASSERT_EQ(ESPIPE, errno);
	ASSERT_EQ(-1, write(save_fd, buf, 1));
	ASSERT_EQ(EBADF, errno);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(-1, read(save_fd, buf, 1));
	ASSERT_EQ(ENODEV, errno);
	close(save_fd);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_GE(load_fd, 0);
	ASSERT_EQ(-1, read(load_fd, buf, 1));
	ASSERT_EQ(EBADF, errno);
	for (off = 0, n = 1; off < (size_t)total; off += n, n = n % 13 + 1) {
		if (n > total - off)
			n = total - off;
		ASSERT_EQ((ssize_t)n, write(load_fd, buf + off, n));
	}
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(-1, write(load_fd, buf, 1));
	ASSERT_EQ(ENODEV, errno);
	close(load_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
	free(buf);
}

/*
 * RESUMING -> STOP with an incomplete stream fails and leaves the device in
 * ERROR (or, as the uAPI allows, in RESUMING), which no request can leave
 * (nor name) and VFIO_DEVICE_RESET does.
 */
TEST_F(migration, incomplete_resume_fails_into_error_until_reset)
{
	int fd = self->device->fd, load_fd;
	char byte = 0;
	__u32 after;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_GE(load_fd, 0);
	ASSERT_EQ(1, write(load_fd, &byte, 1));
	ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	/*
	 * The uAPI lets a failed request leave the device in its original
	 * state or ERROR; rustmig documents ERROR (its device may be half
	 * written), mtty stays in RESUMING.
	 */
	after = get_state(fd);
	if (env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
		ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, after);
	ASSERT_TRUE(after == VFIO_DEVICE_STATE_ERROR || after == VFIO_DEVICE_STATE_RESUMING)
		TH_LOG("after a refused RESUMING -> STOP: %s", state_name(after));
	if (after == VFIO_DEVICE_STATE_ERROR) {
		ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
		ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_ERROR, NULL));
		ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(fd));
	}
	close(load_fd);

	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
}

/*
 * What PRECOPY_INFO on a resuming data_fd gives: -EINVAL, as the uAPI says
 * of any state but PRE_COPY(_P2P); mtty's resuming file has no ioctl at all,
 * -ENOTTY (VFIO_MIGRATION_TEST_RESUMING_IOCTL=ENOTTY).
 */
static int resuming_precopy_info(void)
{
	return env_is("VFIO_MIGRATION_TEST_RESUMING_IOCTL", "ENOTTY") ? -ENOTTY : -EINVAL;
}

/*
 * Whether a read() that gave @n and @err is PRE_COPY's temporary end of
 * stream: -1 with ENOMSG, as the uAPI says. The mtty sample ends it with 0
 * instead (VFIO_MIGRATION_TEST_PRECOPY_END=0 says the device under test does).
 */
static int precopy_end_ok(ssize_t n, int err)
{
	if (env_is("VFIO_MIGRATION_TEST_PRECOPY_END", "0"))
		return n == 0 ? 0 : -1;
	return n == -1 && err == ENOMSG ? 0 : -1;
}

/*
 * PRE_COPY: PRECOPY_INFO reports the initial bytes, which shrink as they are
 * read; once drained read() fails with -ENOMSG (a temporary end). After
 * PRE_COPY -> STOP_COPY the same data_fd ends with read() == 0.
 */
TEST_F(migration, precopy_drains_initial_bytes_then_enomsg)
{
	int fd = self->device->fd, save_fd, none_fd;
	struct vfio_precopy_info info;
	long long left;
	char buf[4096];
	__u64 initial;
	ssize_t n;
	int err;

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "no PRE_COPY expected");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_GT(info.initial_bytes, 0);
	ASSERT_EQ(0, info.dirty_bytes);
	initial = info.initial_bytes;

	ASSERT_EQ(1, read(save_fd, buf, 1));
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(initial - 1, info.initial_bytes);
	/* Nothing blocks: O_NONBLOCK changes nothing, the end is ENOMSG, not EAGAIN. */
	ASSERT_EQ(0, fcntl(save_fd, F_SETFL, O_NONBLOCK));
	n = drain(save_fd, buf, sizeof(buf));
	err = errno;
	ASSERT_EQ(0, precopy_end_ok(n, err)) TH_LOG("read() gave %zd, %s", n, strerror(err));
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(0, info.initial_bytes);
	ASSERT_EQ(0, info.dirty_bytes);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &none_fd));
	ASSERT_EQ(-1, none_fd);
	ASSERT_EQ(-EINVAL, precopy_info(save_fd, &info));
	/* The rest of the stream (MIG_DATA_SIZE of it), then the end. */
	left = data_size(fd);
	ASSERT_GE(left, 0);
	while ((n = read(save_fd, buf, sizeof(buf))) > 0)
		left -= n;
	ASSERT_EQ(0, n);
	/* An estimate (uAPI), at least what is left; exact unless told otherwise. */
	if (!env_is("VFIO_MIGRATION_TEST_DATA_SIZE", "estimate"))
		ASSERT_EQ(0, left);
	ASSERT_GE(left, 0);
	ASSERT_EQ(0, read(save_fd, buf, sizeof(buf)));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(save_fd);
}

/*
 * PRECOPY_INFO's flags are output only after the v2 opt-in: before it the
 * caller's flags come back as they were, after it they are cleared (no
 * REINIT for fresh data).
 */
TEST_F(migration, precopy_info_flags_follow_v2_opt_in)
{
	int fd = self->device->fd, save_fd;
	struct vfio_precopy_info info;

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "no PRE_COPY expected");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	memset(&info, 0, sizeof(info));
	info.argsz = sizeof(info);
	info.flags = 0xf0;
	ASSERT_EQ(0, ioctl(save_fd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	ASSERT_EQ(0xf0, info.flags);
	info.argsz = offsetof(struct vfio_precopy_info, dirty_bytes);
	ASSERT_EQ(-1, ioctl(save_fd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	ASSERT_EQ(EINVAL, errno);

	ASSERT_EQ(0, device_feature(fd, VFIO_DEVICE_FEATURE_SET |
				    VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2, NULL, 0));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	info.argsz = sizeof(info);
	info.flags = 0xf0;
	ASSERT_EQ(0, ioctl(save_fd, VFIO_MIG_GET_PRECOPY_INFO, &info));
	ASSERT_EQ(0, info.flags);
	ASSERT_GT(info.initial_bytes, 0);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(save_fd);
}

/* poll() on @fd for @events with @timeout_ms: the revents, 0 on timeout, -errno. */
static int poll_one(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int ret = poll(&p, 1, timeout_ms);

	return ret < 0 ? -errno : ret ? p.revents : 0;
}

struct poller {
	int fd;
	int revents;
	double seconds;
};

static void *poller_thread(void *arg)
{
	struct poller *p = arg;
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	p->revents = poll_one(p->fd, POLLIN, 20000);
	clock_gettime(CLOCK_MONOTONIC, &b);
	p->seconds = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	return NULL;
}

/*
 * poll() on a data_fd: a PRE_COPY stream is readable while initial bytes
 * remain, not once drained (a read would fail with -ENOMSG); a poller blocked
 * then is woken by PRE_COPY -> STOP_COPY, when the end becomes final. A
 * resuming stream is writable; an ended session reports POLLERR | POLLHUP.
 */
TEST_F(migration, data_fd_poll_follows_the_stream)
{
	int fd = self->device->fd, save_fd, load_fd;
	struct poller p = {};
	pthread_t thread;
	char buf[4096];
	ssize_t n;
	int err;

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "no PRE_COPY expected");
	if (env_is("VFIO_MIGRATION_TEST_POLL", "0"))
		SKIP(return, "the data_fd has no poll (the uAPI does not ask for one)");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	ASSERT_EQ(POLLIN, poll_one(save_fd, POLLIN, 0) & POLLIN);
	n = drain(save_fd, buf, sizeof(buf));
	err = errno;
	ASSERT_EQ(0, precopy_end_ok(n, err)) TH_LOG("read() gave %zd, %s", n, strerror(err));
	ASSERT_EQ(0, poll_one(save_fd, POLLIN, 0));

	p.fd = save_fd;
	ASSERT_EQ(0, pthread_create(&thread, NULL, poller_thread, &p));
	usleep(300 * 1000);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, NULL));
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(POLLIN, p.revents & POLLIN);
	ASSERT_LT(p.seconds, 10.0);
	while (read(save_fd, buf, sizeof(buf)) > 0)
		;
	ASSERT_EQ(0, read(save_fd, buf, sizeof(buf)));
	ASSERT_EQ(POLLIN, poll_one(save_fd, POLLIN, 0) & POLLIN);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(POLLERR | POLLHUP, poll_one(save_fd, POLLIN, 0) & (POLLERR | POLLHUP));
	close(save_fd);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_GE(load_fd, 0);
	ASSERT_EQ(POLLOUT, poll_one(load_fd, POLLOUT, 0) & POLLOUT);
	close(load_fd);
}

/*
 * A data_fd read whose user buffer is an mmap of the device's own BAR0 (the
 * copy faults and takes vfio_pci_core's memory_lock), then a reset during
 * the session (reset_done runs under memory_lock and ends the session): the
 * driver's locks must allow both orders, which lockdep checks in the test
 * kernel. The session is over after the reset.
 */
TEST_F(migration, data_fd_copy_into_own_bar_then_reset)
{
	int fd = self->device->fd, save_fd;
	char *bar0 = self->device->bars[0].vaddr;
	char buf[4];

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");
	if (!bar0 || self->device->bars[0].info.size < 8)
		SKIP(return, "BAR0 cannot be mmapped");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	/*
	 * Offset 4: edu's liveness register, ivshmem's interrupt status. A
	 * driver that fences the BARs in STOP_COPY makes the copy fault.
	 */
	if (env_is("VFIO_MIGRATION_TEST_FENCE", "1")) {
		ASSERT_EQ(-1, read(save_fd, bar0 + 4, 4));
		ASSERT_EQ(EFAULT, errno);
	} else {
		ASSERT_EQ(4, read(save_fd, bar0 + 4, 4));
	}
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
	ASSERT_EQ(-1, read(save_fd, buf, sizeof(buf)));
	ASSERT_EQ(ENODEV, errno);
	close(save_fd);
}

/* ERROR cannot be requested: the request fails and the state stays. */
TEST_F(migration, error_state_cannot_be_requested)
{
	int fd = self->device->fd, data_fd;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");

	ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_ERROR, &data_fd));
	ASSERT_EQ(-1, data_fd);
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_ERROR, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_STOP, get_state(fd));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
}

/* With P2P, every P2P state is reachable from RUNNING and back. */
TEST_F(migration, p2p_states_are_reachable)
{
	static const __u32 path[] = {
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP,
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_RUNNING,
	};
	int fd = self->device->fd, data_fd;
	size_t i;

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_P2P))
		SKIP(return, "no P2P expected");

	for (i = 0; i < ARRAY_SIZE(path); i++) {
		ASSERT_EQ(0, set_state(fd, path[i], &data_fd));
		ASSERT_EQ(-1, data_fd);
		ASSERT_EQ(path[i], get_state(fd));
	}
}

static const __u32 all_states[] = {
	VFIO_DEVICE_STATE_ERROR, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RUNNING,
	VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_RESUMING,
	VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_PRE_COPY,
	VFIO_DEVICE_STATE_PRE_COPY_P2P,
};

static bool is_precopy(__u32 s)
{
	return s == VFIO_DEVICE_STATE_PRE_COPY || s == VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

/*
 * What the uAPI says of a request for @to in @from, for a device with
 * STOP_COPY | P2P | PRE_COPY: the result, whether a new data_fd comes back,
 * and whether the data_fd of @from (if any) lives on.
 */
static int expected_arc(__u32 from, __u32 to, bool *new_fd, bool *old_lives)
{
	*new_fd = false;
	*old_lives = true;
	if (to == VFIO_DEVICE_STATE_ERROR || from == VFIO_DEVICE_STATE_ERROR)
		return -EINVAL;	/* ERROR is never requested, only a reset leaves it */
	if (from == to)
		return 0;
	if (from == VFIO_DEVICE_STATE_STOP_COPY && is_precopy(to))
		return -EINVAL;	/* the blocked transitions */
	if (is_precopy(from) && (is_precopy(to) || to == VFIO_DEVICE_STATE_STOP_COPY))
		return 0;	/* the same saving session goes on */
	*old_lives = false;
	*new_fd = to == VFIO_DEVICE_STATE_STOP_COPY || to == VFIO_DEVICE_STATE_RESUMING ||
		  is_precopy(to);
	return 0;
}

/*
 * Bring the device from RUNNING to @state; the data_fd of the session, if
 * any, goes to @data_fd. RESUMING gets the whole of @stream, ERROR is reached
 * by an incomplete resume. 0 or -errno; -EOPNOTSUPP for ERROR when the
 * refused resume left the device in RESUMING, as the uAPI allows (mtty).
 */
static int reach(int fd, __u32 state, const char *stream, size_t len, int *data_fd)
{
	char byte = 0;
	int ret;

	*data_fd = -1;
	switch (state) {
	case VFIO_DEVICE_STATE_RUNNING:
		return 0;
	case VFIO_DEVICE_STATE_RESUMING:
		ret = set_state(fd, state, data_fd);
		return ret ? ret : write_all(*data_fd, stream, len);
	case VFIO_DEVICE_STATE_ERROR:
		ret = set_state(fd, VFIO_DEVICE_STATE_RESUMING, data_fd);
		if (ret)
			return ret;
		if (write(*data_fd, &byte, 1) != 1)
			return -errno;
		close(*data_fd);
		*data_fd = -1;
		if (set_state(fd, VFIO_DEVICE_STATE_STOP, NULL) != -EINVAL)
			return -EPROTO;
		if (get_state(fd) == VFIO_DEVICE_STATE_RESUMING &&
		    !env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
			return -EOPNOTSUPP;
		return 0;
	default:
		return set_state(fd, state, data_fd);
	}
}

/*
 * Every (from, to) pair of the eight states: the result, the state after,
 * whether a data_fd came back (read-only for saving, write-only for
 * resuming), and whether the old session ended, all as the uAPI says.
 */
TEST_F(migration, state_matrix_8x8_follows_the_uapi)
{
	int fd = self->device->fd, old_fd, new_fd, ret, want, failures = 0, arcs = 0;
	int unreachable = 0;
	bool want_new, got_new, old_lives;
	__u32 after, want_after;
	long long len;
	char *stream;
	size_t i, j;

	if (self->want_flags != (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				 VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "the matrix is for STOP_COPY | P2P | PRE_COPY");

	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);

	for (i = 0; i < ARRAY_SIZE(all_states); i++) {
		for (j = 0; j < ARRAY_SIZE(all_states); j++) {
			__u32 from = all_states[i], to = all_states[j];

			ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
			ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
			ret = reach(fd, from, stream, len, &old_fd);
			if (ret == -EOPNOTSUPP) {
				unreachable++;
				continue;
			}
			if (ret || get_state(fd) != from) {
				TH_LOG("cannot reach %s: %s", state_name(from), strerror(-ret));
				failures++;
				continue;
			}
			want = expected_arc(from, to, &want_new, &old_lives);
			ret = set_state(fd, to, &new_fd);
			after = get_state(fd);
			want_after = want ? from : to;
			got_new = new_fd >= 0;
			arcs++;
			if (ret != want || after != want_after || got_new != want_new) {
				TH_LOG("%s -> %s: got %d (%s), now %s, data_fd %d; want %d, %s, %s",
				       state_name(from), state_name(to), ret, strerror(-ret),
				       state_name(after), new_fd, want, state_name(want_after),
				       want_new ? "a data_fd" : "none");
				failures++;
			} else if (new_fd >= 0 &&
				   (fcntl(new_fd, F_GETFL) & O_ACCMODE) !=
				   (to == VFIO_DEVICE_STATE_RESUMING ? O_WRONLY : O_RDONLY)) {
				TH_LOG("%s -> %s: data_fd has the wrong access mode",
				       state_name(from), state_name(to));
				failures++;
			} else if (old_fd >= 0 && session_ended(old_fd) == old_lives) {
				TH_LOG("%s -> %s: the old session %s", state_name(from),
				       state_name(to), old_lives ? "ended" : "lives on");
				failures++;
			}
			if (new_fd >= 0)
				close(new_fd);
			if (old_fd >= 0)
				close(old_fd);
		}
	}
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	free(stream);
	ksft_print_msg("state matrix: %d arcs checked, %d wrong%s\n", arcs, failures,
		       unreachable ?
		       "; ERROR not reachable (a refused resume stays in RESUMING)" : "");
	ASSERT_EQ(64 - unreachable, arcs);
	ASSERT_LE(unreachable, 8);
	ASSERT_EQ(0, failures);
}

/*
 * In each of the eight states: MIG_DATA_SIZE answers (the uAPI allows it in
 * every state) with a length above 0, the one RUNNING gave where no stream is
 * being read; a device_state that is not one of the eight (8, 0x7fffffff,
 * 0xffffffff) is refused with EINVAL and changes nothing; PRECOPY_INFO
 * answers on a saving data_fd in PRE_COPY and PRE_COPY_P2P (initial bytes
 * left, nothing dirty) and refuses with EINVAL on a resuming one.
 */
TEST_F(migration, every_state_answers_data_size_and_refuses_unknown_states)
{
	static const __u32 unknown[] = { 8, 0x7fffffff, 0xffffffff };
	int fd = self->device->fd, data_fd, ret;
	struct vfio_precopy_info info;
	long long len, full, size;
	char *stream;
	size_t i, j;

	if (self->want_flags != (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				 VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "for STOP_COPY | P2P | PRE_COPY");
	full = data_size(fd);
	ASSERT_GT(full, 0);
	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);

	for (i = 0; i < ARRAY_SIZE(all_states); i++) {
		__u32 s = all_states[i];

		ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
		ret = reach(fd, s, stream, len, &data_fd);
		if (ret == -EOPNOTSUPP)
			continue;
		ASSERT_EQ(0, ret) TH_LOG("reaching %s", state_name(s));
		ASSERT_EQ(s, get_state(fd));
		size = data_size(fd);
		ASSERT_GT(size, 0) TH_LOG("MIG_DATA_SIZE in %s: %s", state_name(s),
					  size < 0 ? strerror(-size) : "0");
		if (s != VFIO_DEVICE_STATE_STOP_COPY && !is_precopy(s))
			ASSERT_EQ(full, size) TH_LOG("MIG_DATA_SIZE in %s", state_name(s));
		for (j = 0; j < ARRAY_SIZE(unknown); j++) {
			ret = set_state(fd, unknown[j], NULL);
			ASSERT_EQ(-EINVAL, ret) TH_LOG("device_state %#x in %s", unknown[j],
						       state_name(s));
			ASSERT_EQ(s, get_state(fd)) TH_LOG("device_state %#x in %s", unknown[j],
							   state_name(s));
		}
		if (is_precopy(s)) {
			ASSERT_EQ(0, precopy_info(data_fd, &info)) TH_LOG("in %s", state_name(s));
			ASSERT_GT(info.initial_bytes, 0);
			ASSERT_EQ(0, info.dirty_bytes);
		} else if (s == VFIO_DEVICE_STATE_RESUMING) {
			ASSERT_EQ(resuming_precopy_info(), precopy_info(data_fd, &info));
		}
		if (data_fd >= 0)
			close(data_fd);
	}
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	free(stream);
}

/*
 * The memory BAR with the most bytes, or -1. It may not be mmapped (a BAR the
 * driver traps is not): then only region read/write reach it.
 */
static int largest_bar(struct vfio_pci_device *device)
{
	int i, best = -1;

	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		if (!device->bars[i].info.size)
			continue;
		if (best < 0 || device->bars[i].info.size > device->bars[best].info.size)
			best = i;
	}
	return best;
}

/*
 * The BAR the fencing tests write to, the largest: its index (or -1), its
 * mmap (NULL if it is not mmapped), region offset and size.
 */
static int fenced_bar(struct vfio_pci_device *device, char **mem, __u64 *offset, size_t *len)
{
	int bar = largest_bar(device);

	if (bar >= 0) {
		*mem = device->bars[bar].vaddr;
		*offset = device->bars[bar].info.offset;
		*len = device->bars[bar].info.size;
	}
	return bar;
}

static sigjmp_buf sigbus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/*
 * Touch @p (a write of @value if @write): 0, or SIGBUS if the access faulted.
 * A NULL @p is a BAR that is not mmapped: it faults like a fenced one.
 */
static int touch(char *p, bool write, char value)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	int ret = 0;

	if (!p)
		return SIGBUS;
	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(sigbus_jmp, 1))
		ret = SIGBUS;
	else if (write)
		WRITE_ONCE(*p, value);
	else
		(void)READ_ONCE(*p);
	sigaction(SIGBUS, &old, NULL);
	return ret;
}

/*
 * edu's writes of bars_are_fenced_while_stopped: each would change a register
 * of its state if it reached the device (from perturb_state()'s values; the
 * transfer it would start stays inside edu's buffer and memory below 2^28).
 */
static const struct {
	__u64 reg;
	__u32 value;
} edu_fenced_writes[] = {
	{ 0x04, 0xdeadbeef },		/* liveness */
	{ 0x08, 12 },			/* factorial: computes 12! */
	{ 0x20, 0x80 },			/* status: interrupt at the end of a computation */
	{ 0x60, 0x8 },			/* interrupt raise: sets the interrupt status */
	{ 0x80, 0x40100 },		/* DMA source, in edu's buffer */
	{ 0x88, 0x42000 },		/* DMA destination */
	{ 0x90, 0x10 },			/* DMA count */
	{ 0x98, 0x7 },			/* DMA command: run, to memory, interrupt */
};

/* Check edu's state registers against @before; the first that differs goes to @at. */
static int edu_state_is(struct vfio_pci_device *device,
			const __u32 before[ARRAY_SIZE(edu_state_regs)],
			__u32 now[ARRAY_SIZE(edu_state_regs)], size_t *at)
{
	int ret = edu_read_state(device, now);

	if (ret)
		return ret;
	*at = edu_state_diff(before, now);
	return *at == ARRAY_SIZE(edu_state_regs) ? 0 : -EBADE;
}

/*
 * While the device is stopped (STOP, STOP_COPY, RESUMING, and ERROR after a
 * failed resume) the user cannot reach its BARs: mmap accesses raise SIGBUS
 * and region read/write fail with EIO, so nothing can change the state being
 * saved or restored. Back in RUNNING both work again and the memory is as it
 * was. edu's BAR0 cannot be mmapped and starts with a read-only id: in every
 * stopped state each of its state registers is written by region writes
 * (which must fail with EIO); back in RUNNING, and again once a transfer or a
 * computation they started would have ended, every register is as before the
 * stopped states, and a write reaches the device again.
 */
TEST_F(migration, bars_are_fenced_while_stopped)
{
	static const __u32 stopped[] = {
		VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_STOP,
		VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_ERROR,
	};
	__u32 edu_before[ARRAY_SIZE(edu_state_regs)], edu_now[ARRAY_SIZE(edu_state_regs)];
	int fd = self->device->fd, data_fd = -1, pass;
	bool edu = is_edu(self->device);
	size_t i, j, len, at;
	char *mem;
	__u64 offset;
	__u32 live;
	char v, c;

	if (!env_is("VFIO_MIGRATION_TEST_FENCE", "1"))
		SKIP(return, "the driver does not fence its BARs");
	ASSERT_GE(fenced_bar(self->device, &mem, &offset, &len), 0);
	if (edu) {
		/* Registers that each of edu_fenced_writes would change. */
		ASSERT_EQ(0, perturb_state(self->device, 7));
		ASSERT_EQ(0, bar_write32(self->device, 0, 0x20, 0));
		ASSERT_EQ(0, bar_write32(self->device, 0, 0x64, ~0U));
		ASSERT_EQ(0, bar_write32(self->device, 0, 0x08, 5));
		for (i = 0; i < 1000 && bar_read32(self->device, 0, 0x20) & 0x1; i++)
			usleep(1000);
		ASSERT_EQ(0, edu_read_state(self->device, edu_before));
		ASSERT_EQ(120, edu_before[1]) TH_LOG("edu computed 5! as %u", edu_before[1]);
	}

	if (mem) {
		ASSERT_EQ(0, touch(mem, true, 0x5a));
		v = READ_ONCE(mem[0]);
	} else {
		c = 0x5a;
		ASSERT_EQ(1, pwrite(fd, &c, 1, offset));
		ASSERT_EQ(1, pread(fd, &v, 1, offset));
	}
	ASSERT_EQ(1, pread(fd, &c, 1, offset));
	ASSERT_EQ(v, c);

	for (i = 0; i < ARRAY_SIZE(stopped); i++) {
		if (stopped[i] == VFIO_DEVICE_STATE_ERROR) {
			/* RESUMING got no stream: the step out of it fails into ERROR. */
			ASSERT_NE(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
			ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(fd));
		} else {
			if (data_fd >= 0)
				close(data_fd);
			ASSERT_EQ(0, set_state(fd, stopped[i], &data_fd));
		}
		ASSERT_EQ(SIGBUS, touch(mem, false, 0)) TH_LOG("in %s", state_name(stopped[i]));
		ASSERT_EQ(SIGBUS, touch(mem, true, (char)~v))
			TH_LOG("in %s", state_name(stopped[i]));
		ASSERT_EQ(-1, pread(fd, &c, 1, offset)) TH_LOG("in %s", state_name(stopped[i]));
		ASSERT_EQ(EIO, errno);
		ASSERT_EQ(-1, pwrite(fd, &c, 1, offset)) TH_LOG("in %s", state_name(stopped[i]));
		ASSERT_EQ(EIO, errno);
		for (j = 0; edu && j < ARRAY_SIZE(edu_fenced_writes); j++)
			ASSERT_EQ(-EIO, bar_write32(self->device, 0, edu_fenced_writes[j].reg,
						    edu_fenced_writes[j].value))
				TH_LOG("in %s, a write of edu register %#llx did not fail with EIO",
				       state_name(stopped[i]),
				       (unsigned long long)edu_fenced_writes[j].reg);
	}
	if (data_fd >= 0)
		close(data_fd);
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
	if (mem) {
		ASSERT_EQ(0, touch(mem, false, 0));
		ASSERT_EQ(v, READ_ONCE(mem[0]));
	}
	ASSERT_EQ(1, pread(fd, &c, 1, offset));
	ASSERT_EQ(v, c);
	if (!edu)
		return;
	/*
	 * Nothing written while stopped reached edu, not even later: a transfer
	 * lands about 100 ms after its command, a computation soon after its
	 * argument. (edu has no reset: VFIO_DEVICE_RESET leaves its registers.)
	 */
	for (pass = 0; pass < 2; pass++) {
		if (pass)
			usleep(300 * 1000);
		ASSERT_EQ(0, edu_state_is(self->device, edu_before, edu_now, &at))
			TH_LOG("%s RUNNING: edu register %#llx is %#x, expected %#x (before STOP)",
			       pass ? "300 ms after" : "back in",
			       (unsigned long long)edu_state_regs[at], edu_now[at], edu_before[at]);
	}
	/* Running, the device takes writes again: liveness reads back the complement. */
	ASSERT_EQ(0, bar_write32(self->device, 0, 0x04, edu_before[0]));
	live = bar_read32(self->device, 0, 0x04);
	ASSERT_EQ(~edu_before[0], live)
		TH_LOG("RUNNING: %#x written to edu register 0x4, which reads %#x, expected %#x",
		       edu_before[0], live, ~edu_before[0]);
}

/*
 * Writes one byte of each page of the BAR at @offset, by mmap at @mem (unless
 * it is not mmapped) and by pwrite: all must fail.
 */
static int try_writes(struct vfio_pci_device *device, char *mem, __u64 offset, size_t len)
{
	size_t i;
	__u32 v;
	char c;

	for (i = 0; i < len; i += 4096) {
		c = ~(char)i;
		if (touch(mem ? mem + i : NULL, true, c) != SIGBUS)
			return -1;
		if (pwrite(device->fd, &c, 1, offset + i) != -1 || errno != EIO)
			return -1;
	}
	/*
	 * edu's page 0 starts with its read-only id: write its state registers
	 * too (the DMA command without the run bit: a transfer from the
	 * 0xdeadbeef just written would leave edu's buffer).
	 */
	for (i = 0; is_edu(device) && i < ARRAY_SIZE(edu_state_regs); i++) {
		v = edu_state_regs[i] == 0x98 ? 0xdeadbeee : 0xdeadbeef;
		if (bar_write32(device, 0, edu_state_regs[i], v) != -EIO)
			return -1;
	}
	return 0;
}

/*
 * What the user writes to the BARs while the device is stopped does not reach
 * the saved state: a stream saved after writes in STOP, and in STOP_COPY
 * before and in the middle of reading it, is byte for byte the stream saved
 * before them.
 */
TEST_F(migration, bar_writes_while_stopped_do_not_change_the_saved_stream)
{
	int fd = self->device->fd, bar, save_fd;
	char *ref, *again;
	char *mem;
	long long size;
	__u64 offset;
	size_t len;

	if (!env_is("VFIO_MIGRATION_TEST_FENCE", "1"))
		SKIP(return, "the driver does not fence its BARs");
	/* A state a save could disturb: ivshmem's status clears as it is read. */
	perturb_state(self->device, 3);
	bar = fenced_bar(self->device, &mem, &offset, &len);
	ASSERT_GE(bar, 0);
	size = data_size(fd);
	ASSERT_GT(size, 0);
	ref = malloc(size + 1);
	again = malloc(size + 1);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, again);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_EQ(size, read_all(save_fd, ref, size + 1, 65536));
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));

	ASSERT_EQ(0, try_writes(self->device, mem, offset, len));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_EQ(0, try_writes(self->device, mem, offset, len));
	ASSERT_EQ(size / 2, read_all(save_fd, again, size / 2, 65536));
	ASSERT_EQ(0, try_writes(self->device, mem, offset, len));
	ASSERT_EQ(size - size / 2, read_all(save_fd, again + size / 2, size + 1 - size / 2, 65536));
	close(save_fd);
	ASSERT_EQ(0, memcmp(ref, again, size));
	TH_LOG("%lld byte stream saved twice, %zu pages of BAR%d written in between: equal",
	       size, len / 4096, bar);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	free(ref);
	free(again);
}

/*
 * Closing a data_fd in the middle of the stream ends nothing else: the device
 * leaves STOP_COPY normally and a new session saves the whole stream again.
 */
TEST_F(migration, closing_data_fd_mid_stream_keeps_the_device_usable)
{
	int fd = self->device->fd, save_fd;
	long long size;
	char *buf;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");
	size = data_size(fd);
	ASSERT_GT(size, 16);
	buf = malloc(size + 1);
	ASSERT_NE(NULL, buf);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_EQ(16, read(save_fd, buf, 16));
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_EQ(size, read_all(save_fd, buf, size + 1, 4096));
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	free(buf);
}

/*
 * MIG_DATA_SIZE is exact: in RUNNING and STOP it is the length of a full
 * stream, in PRE_COPY and STOP_COPY what is left of the session's stream.
 */
TEST_F(migration, data_size_is_exact_in_every_saving_state)
{
	int fd = self->device->fd, save_fd;
	long long size;
	char buf[64];

	if (self->want_flags != (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				 VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "needs STOP_COPY | P2P | PRE_COPY");
	if (env_is("VFIO_MIGRATION_TEST_DATA_SIZE", "estimate"))
		SKIP(return, "MIG_DATA_SIZE is an estimate (as the uAPI allows)");
	size = data_size(fd);
	ASSERT_GT(size, (long long)sizeof(buf));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(size, data_size(fd));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_EQ(size, data_size(fd));
	ASSERT_EQ(1, read(save_fd, buf, 1));
	ASSERT_EQ(size - 1, data_size(fd));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, NULL));
	ASSERT_EQ(size - 1, data_size(fd));
	ASSERT_EQ((ssize_t)sizeof(buf), read(save_fd, buf, sizeof(buf)));
	ASSERT_EQ(size - 1 - (long long)sizeof(buf), data_size(fd));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(save_fd);
}

/*
 * A stream whose header is not one this device may load is refused by the
 * very write that completes the header, before anything reaches the device:
 * a flipped bit in the magic, the major version or header_len (checked before
 * the CRC), a flipped bit elsewhere (caught by the CRC), and, with the CRC
 * recomputed, header flags, another device id or state size, a payload_len
 * too short for the device's state. The session stays refused, RESUMING ->
 * STOP fails into ERROR, and the device's memory (the state BAR), or edu's
 * registers, are as they were before the stream was written, although they
 * differ from the stream's.
 */
TEST_F(migration, resume_refuses_a_foreign_header_before_touching_the_device)
{
	static const struct {
		size_t byte;	/* in the header */
		__u8 flip;	/* the bits flipped there; 0: the u64 there - 1 */
		bool fix_crc;	/* recompute the header CRC */
		int err;
	} cases[] = {
		{ offsetof(struct rustmig_stream_header, magic), 0x01, false, EINVAL },
		{ offsetof(struct rustmig_stream_header, version_major), 0x01, false,
		  EPROTONOSUPPORT },
		/* 72 -> 8 */
		{ offsetof(struct rustmig_stream_header, header_len), 0x40, false, EINVAL },
		{ offsetof(struct rustmig_stream_header, vendor), 0x01, false, EBADMSG },
		{ RUSTMIG_STREAM_HEADER_CRC_OFFSET, 0x01, false, EBADMSG },
		/* A flag no reader knows, then the one that says how records are checked. */
		{ offsetof(struct rustmig_stream_header, flags), 0x02, true, EOPNOTSUPP },
		{ offsetof(struct rustmig_stream_header, flags), 0x01, true, EBADMSG },
		{ offsetof(struct rustmig_stream_header, vendor), 0x01, true, EPROTO },
		{ offsetof(struct rustmig_stream_header, state_size), 0x01, true, EPROTO },
		{ offsetof(struct rustmig_stream_header, payload_len), 0, true, EINVAL },
	};
	const char *bar_env = getenv("VFIO_MIGRATION_TEST_BAR");
	__u32 edu_before[ARRAY_SIZE(edu_state_regs)], edu_now[ARRAY_SIZE(edu_state_regs)];
	bool edu = is_edu(self->device) && hardware_state();
	int fd = self->device->fd, load_fd, bar = -1;
	char *stream, *before = NULL, *p, header[RUSTMIG_STREAM_HEADER_LEN];
	size_t i, size = 0, at;
	long long len;

	if (!env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
		SKIP(return, "not a rustmig stream");
	/* With a memory BAR holding the state, check that it stays untouched. */
	if (bar_env) {
		bar = atoi(bar_env);
		ASSERT_NE(NULL, self->device->bars[bar].vaddr);
		size = self->device->bars[bar].info.size;
		before = malloc(size);
		ASSERT_NE(NULL, before);
	}
	/* edu: its registers, which each case then makes differ from the stream's. */
	if (edu)
		ASSERT_EQ(0, perturb_state(self->device, 0x30));
	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);
	ASSERT_GT(len, RUSTMIG_STREAM_HEADER_LEN);
	ASSERT_EQ(RUSTMIG_STREAM_HEADER_LEN, rustmig_header_len_field(stream));
	memcpy(header, stream, sizeof(header));

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		/* Make the device's memory differ from the stream's. */
		if (before) {
			memset(self->device->bars[bar].vaddr, 0xa5 + i, size);
			memcpy(before, self->device->bars[bar].vaddr, size);
		}
		if (edu) {
			ASSERT_EQ(0, perturb_state(self->device, 0x31 + i));
			ASSERT_EQ(0, edu_read_state(self->device, edu_before));
		}
		p = stream + cases[i].byte;
		if (cases[i].flip)
			*p ^= cases[i].flip;
		else
			rustmig_put64(p, rustmig_get64(p) - 1);
		if (cases[i].fix_crc)
			rustmig_header_fix_crc(stream, len);
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
		ASSERT_EQ(64, write(load_fd, stream, 64));
		ASSERT_EQ(-1, write(load_fd, stream + 64, len - 64));
		ASSERT_EQ(cases[i].err, errno) TH_LOG("case %zu", i);
		ASSERT_EQ(-1, write(load_fd, stream + RUSTMIG_STREAM_HEADER_LEN, 1));
		ASSERT_EQ(cases[i].err, errno) TH_LOG("case %zu", i);
		ASSERT_EQ(-cases[i].err, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
		ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(fd));
		close(load_fd);
		ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
		if (before)
			ASSERT_EQ(0, memcmp(before, self->device->bars[bar].vaddr, size))
				TH_LOG("case %zu", i);
		if (edu) {
			ASSERT_EQ(0, edu_read_state(self->device, edu_now));
			at = edu_state_diff(edu_before, edu_now);
			ASSERT_EQ(ARRAY_SIZE(edu_state_regs), at)
				TH_LOG("case %zu (%s): edu register %#llx is %#x, was %#x",
				       i, strerror(cases[i].err),
				       (unsigned long long)edu_state_regs[at], edu_now[at],
				       edu_before[at]);
		}
		memcpy(stream, header, sizeof(header));
	}
	free(stream);
	free(before);
}

/* The stress case's shared state. */
struct storm {
	int fd;			/* the device */
	pthread_mutex_t lock;	/* protects data_fd */
	int data_fd;		/* the current session's data_fd, or -1 */
	bool stop;
	long ops[4];		/* per thread */
	long granted;		/* state requests that succeeded */
	long recoveries;	/* resets of thread 0 after a failed request left ERROR/RESUMING */
	long unexpected;
	char what[128];		/* the first unexpected result */
};

/*
 * The errors a refused or ended stream gives: rustmig documents them; the
 * uAPI leaves them to the driver (mtty refuses a write past its stream's end
 * with ENOMEM, and a bad header with EFAULT), so for another driver any
 * errno will do.
 */
static bool stream_refusal(int err)
{
	if (!env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
		return err != 0;
	return err == EINVAL || err == EBADMSG || err == EPROTO || err == EPROTONOSUPPORT ||
	       err == EOPNOTSUPP || err == ENODEV;
}

static void storm_unexpected(struct storm *st, const char *op, int err)
{
	pthread_mutex_lock(&st->lock);
	if (!st->unexpected++)
		snprintf(st->what, sizeof(st->what), "%s: %s", op, strerror(err));
	pthread_mutex_unlock(&st->lock);
}

/* Thread 0: random state requests; it owns the data_fds. */
static void *storm_transitions(void *arg)
{
	struct storm *st = arg;
	unsigned int seed = 1;
	int ret, new_fd, old;

	while (!READ_ONCE(st->stop)) {
		__u32 to = all_states[1 + rand_r(&seed) % 7];

		/* RESUMING -> STOP fails with the error that refused the stream. */
		ret = set_state(st->fd, to, &new_fd);
		if (ret && !stream_refusal(-ret))
			storm_unexpected(st, "set_state", -ret);
		/*
		 * As QEMU does, a device left in ERROR is reset, and so is one
		 * that a refused resume left in RESUMING (as the uAPI allows).
		 */
		if (ret && (get_state(st->fd) == VFIO_DEVICE_STATE_ERROR ||
			    get_state(st->fd) == VFIO_DEVICE_STATE_RESUMING)) {
			if (ioctl(st->fd, VFIO_DEVICE_RESET, NULL))
				storm_unexpected(st, "VFIO_DEVICE_RESET after ERROR", errno);
			st->recoveries++;
		}
		if (!ret) {
			/* Only this thread moves the device; a reset returns it to RUNNING. */
			__u32 now = get_state(st->fd);

			st->granted++;
			if (now != to && now != VFIO_DEVICE_STATE_RUNNING) {
				char op[64];

				snprintf(op, sizeof(op), "set_state(%s) granted, then %s",
					 state_name(to), state_name(now));
				storm_unexpected(st, op, 0);
			}
		}
		if (new_fd >= 0) {
			pthread_mutex_lock(&st->lock);
			old = st->data_fd;
			st->data_fd = new_fd;
			pthread_mutex_unlock(&st->lock);
			if (old >= 0)
				close(old);
		}
		st->ops[0]++;
	}
	return NULL;
}

/* Thread 1: reads and writes of whatever session is open. */
static void *storm_io(void *arg)
{
	struct storm *st = arg;
	char buf[8192];
	ssize_t n;
	int fd;

	while (!READ_ONCE(st->stop)) {
		pthread_mutex_lock(&st->lock);
		fd = st->data_fd >= 0 ? dup(st->data_fd) : -1;
		pthread_mutex_unlock(&st->lock);
		if (fd < 0) {
			sched_yield();
			continue;
		}
		n = read(fd, buf, sizeof(buf));
		/* EBADF: a resuming (write-only) file; EINVAL: a refused stream. */
		if (n < 0 && errno != ENOMSG && errno != ENODEV && errno != EBADF)
			storm_unexpected(st, "read", errno);
		if (n < 0 && errno == EBADF) {
			n = write(fd, buf, 1 + st->ops[1] % sizeof(buf));
			if (n < 0 && !stream_refusal(errno))
				storm_unexpected(st, "write", errno);
		}
		close(fd);
		st->ops[1]++;
	}
	return NULL;
}

/* Thread 2: PRECOPY_INFO, MIG_DATA_SIZE and the state. */
static void *storm_queries(void *arg)
{
	struct storm *st = arg;
	struct vfio_precopy_info info;
	int fd, ret;

	while (!READ_ONCE(st->stop)) {
		pthread_mutex_lock(&st->lock);
		fd = st->data_fd >= 0 ? dup(st->data_fd) : -1;
		pthread_mutex_unlock(&st->lock);
		if (fd >= 0) {
			ret = precopy_info(fd, &info);
			if (ret && ret != -EINVAL && ret != -ENODEV &&
			    ret != resuming_precopy_info())
				storm_unexpected(st, "PRECOPY_INFO", -ret);
			close(fd);
		}
		if (data_size(st->fd) < 0)
			storm_unexpected(st, "MIG_DATA_SIZE", EIO);
		if (get_state(st->fd) == (__u32)-1)
			storm_unexpected(st, "MIG_DEVICE_STATE", EIO);
		st->ops[2]++;
	}
	return NULL;
}

/* Thread 3: VFIO_DEVICE_RESET every few milliseconds. */
static void *storm_resets(void *arg)
{
	struct storm *st = arg;

	while (!READ_ONCE(st->stop)) {
		if (ioctl(st->fd, VFIO_DEVICE_RESET, NULL))
			storm_unexpected(st, "VFIO_DEVICE_RESET", errno);
		st->ops[3]++;
		usleep(5000);
	}
	return NULL;
}

/*
 * Four threads for a few seconds on one device: random state requests (the
 * old data_fd closed as a new one comes), reads and writes of the current
 * session, PRECOPY_INFO / MIG_DATA_SIZE / state queries, and resets. Every
 * result must be one the uAPI allows, a granted request must leave the device
 * in the state asked for (or RUNNING, if a reset came between), a device left
 * in ERROR is reset as QEMU would, and at least half of the requests must be
 * granted. Afterwards the device must still
 * restore a saved stream over a changed state: saved again, it gives the same
 * bytes. The kernel's lock, memory and UB checkers watch the rest.
 */
TEST_F(migration, storm_of_transitions_io_queries_and_resets)
{
	void *(*fns[4])(void *) = {
		storm_transitions, storm_io, storm_queries, storm_resets,
	};
	struct storm st = { .fd = self->device->fd, .data_fd = -1 };
	long long len, other_len, at;
	char *stream, *other;
	pthread_t threads[4];
	bool known;
	int i;

	if (self->want_flags != (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				 VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "needs STOP_COPY | P2P | PRE_COPY");
	pthread_mutex_init(&st.lock, NULL);
	/* Two threads on each CPU: on a machine with two, the four race in pairs. */
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, fns[i], &st));
		ASSERT_LE(0, pin_thread(threads[i], i));
	}
	sleep(4);
	WRITE_ONCE(st.stop, true);
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, pthread_join(threads[i], NULL));
	if (st.data_fd >= 0)
		close(st.data_fd);
	ksft_print_msg("storm: %ld state requests, %ld granted, %ld failed into ERROR or a stuck\n",
		       st.ops[0], st.granted, st.recoveries);
	ksft_print_msg("RESUMING and were reset; %ld reads/writes, %ld queries, %ld resets;\n",
		       st.ops[1], st.ops[2], st.ops[3]);
	ksft_print_msg("%ld unexpected%s%s\n", st.unexpected, st.unexpected ? ", first: " : "",
		       st.what);
	ASSERT_EQ(0, st.unexpected);
	for (i = 0; i < 4; i++)
		ASSERT_GT(st.ops[i], 0);
	/*
	 * Refused: leaving RESUMING with what thread 1 wrote, STOP_COPY to
	 * PRE_COPY(_P2P), and the rare request that a reset beats: most are granted.
	 */
	ASSERT_GE(st.granted * 2, st.ops[0]);

	ASSERT_EQ(0, ioctl(st.fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(st.fd));
	known = perturb_state(self->device, 1) != -ENOENT;
	stream = save_stream(st.fd, &len);
	ASSERT_NE(NULL, stream);
	if (known) {
		/* The state the stream must bring back is not the device's now. */
		ASSERT_EQ(0, perturb_state(self->device, 2));
		other = save_stream(st.fd, &other_len);
		ASSERT_NE(NULL, other);
		ASSERT_FALSE(same_stream(stream, len, other, other_len, &at));
		free(other);
	}
	ASSERT_EQ(0, set_state(st.fd, VFIO_DEVICE_STATE_RESUMING, &i));
	ASSERT_EQ(0, write_all(i, stream, len));
	ASSERT_EQ(0, set_state(st.fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(i);
	other = save_stream(st.fd, &other_len);
	ASSERT_NE(NULL, other);
	ASSERT_TRUE(same_stream(stream, len, other, other_len, &at))
		TH_LOG("the restored state saves differently from byte %lld", at);
	free(stream);
	free(other);
}

/* Kernel memory in use (KiB), from /proc/meminfo kept open in @fd. */
static long long kernel_kib(int fd)
{
	long long total = 0, v;
	char buf[8192], *line;
	ssize_t n;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	for (line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (sscanf(line, "MemTotal: %lld", &v) == 1)
			total += v;
		else if (sscanf(line, "MemFree: %lld", &v) == 1 ||
			 sscanf(line, "Buffers: %lld", &v) == 1 ||
			 sscanf(line, "Cached: %lld", &v) == 1 ||
			 sscanf(line, "AnonPages: %lld", &v) == 1)
			total -= v;
	}
	return total;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* The pattern word @i of the round trip. */
static __u64 pattern(size_t i)
{
	__u64 x = i * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;

	return x ^ (x >> 29);
}

/* The first word of @len bytes at @p that is not the pattern, or @len / 8. */
static size_t pattern_mismatch(const __u64 *p, size_t len)
{
	size_t i;

	for (i = 0; i < len / 8 && READ_ONCE(p[i]) == pattern(i); i++)
		;
	return i;
}

/*
 * Save this device with a pattern in its state BAR, load the stream into the
 * peer (another device of the same kind) and compare the peer's BAR with the
 * pattern byte for byte. The save reads the stream in 1 MiB reads while
 * sampling the kernel's memory use: it must grow by less than 2 MiB, whatever
 * the size of the state (the stream is built a record at a time).
 */
TEST_F(migration, round_trip_to_peer_is_bit_exact)
{
	const char *peer_bdf = getenv("VFIO_MIGRATION_TEST_PEER");
	const char *bar_env = getenv("VFIO_MIGRATION_TEST_BAR");
	long long size, total = 0, base, peak, k;
	struct vfio_pci_device *peer;
	int fd = self->device->fd, save_fd, load_fd, mfd, bar;
	struct iommu *peer_iommu;
	double t0, t_save, t_load, t_copy, t_arcs, t_arcs_peer;
	__u64 *src, *dst;
	size_t len, off;
	ssize_t n;
	char *buf;

	if (self->want_flags <= 0 || !peer_bdf || !bar_env)
		SKIP(return, "no peer device or state BAR given");
	bar = atoi(bar_env);
	peer_iommu = iommu_init(MODE_IOMMUFD);
	peer = vfio_pci_device_init(peer_bdf, peer_iommu);
	src = self->device->bars[bar].vaddr;
	dst = peer->bars[bar].vaddr;
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	len = self->device->bars[bar].info.size;
	ASSERT_EQ(len, peer->bars[bar].info.size);

	for (off = 0; off < len / 8; off++) {
		WRITE_ONCE(src[off], pattern(off));
		WRITE_ONCE(dst[off], 0);
	}

	size = data_size(fd);
	ASSERT_GT(size, (long long)len);
	buf = malloc(size);
	ASSERT_NE(NULL, buf);
	memset(buf, 0, size);	/* fault the buffer in before measuring */
	mfd = open("/proc/meminfo", O_RDONLY);
	ASSERT_GE(mfd, 0);
	base = kernel_kib(mfd);
	peak = base;
	ASSERT_GT(base, 0);

	/* The stream's rates count its reads and writes; the arcs are timed apart. */
	t0 = now();
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	t_arcs = now() - t0;
	t_save = 0;
	for (;;) {
		t0 = now();
		n = read(save_fd, buf + total, size - total < (1 << 20) ? size - total : (1 << 20));
		t_save += now() - t0;
		ASSERT_GE(n, 0) TH_LOG("read at %lld: %s", total, strerror(errno));
		if (n == 0)
			break;
		total += n;
		/*
		 * Every 16 MiB, outside the time measured: reading /proc/meminfo
		 * is not free under TCG.
		 */
		if (!(total & ((16 << 20) - 1)) || total == size) {
			k = kernel_kib(mfd);
			if (k > peak)
				peak = k;
		}
	}
	close(mfd);
	ASSERT_EQ(size, total);
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));

	t0 = now();
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	t_arcs_peer = now() - t0;
	t0 = now();
	for (off = 0, n = 0; off < (size_t)size; off += n) {
		n = size - off < (1 << 20) - 3 ? size - off : (1 << 20) - 3;
		ASSERT_EQ(n, write(load_fd, buf + off, n))
			TH_LOG("write at %zu: %s", off, strerror(errno));
	}
	t_load = now() - t0;
	t0 = now();
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_STOP, NULL));
	close(load_fd);
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	t_arcs_peer += now() - t0;

	off = pattern_mismatch(dst, len);
	ASSERT_EQ(len / 8, off) TH_LOG("the peer differs at BAR%d offset %zu", bar, off * 8);
	off = pattern_mismatch(src, len);
	ASSERT_EQ(len / 8, off) TH_LOG("the source changed at BAR%d offset %zu", bar, off * 8);

	ksft_print_msg("round trip %s -> %s: BAR%d %zu KiB, stream %lld bytes, bit-exact\n",
		       device_bdf, peer_bdf, bar, len >> 10, size);
	ksft_print_msg("save %.3f s, load %.3f s (reads and writes); arcs %.1f ms (RUNNING -> STOP_COPY), %.1f ms (-> RESUMING, STOP, RUNNING); kernel memory growth during the save: %lld KiB\n",
		       t_save, t_load, t_arcs * 1e3, t_arcs_peer * 1e3, peak - base);
	/* The anchor: a copy of the same BAR through its mapping, already faulted in. */
	t0 = now();
	memcpy(buf, src, len);
	t_copy = now() - t0;
	ksft_print_msg("stream read %.0f MiB/s, written %.0f MiB/s; memcpy of the mapped BAR %.0f MiB/s: read at %.2fx, written at %.2fx of it\n",
		       size / t_save / (1 << 20), size / t_load / (1 << 20), len / t_copy / (1 << 20),
		       size / t_save / (len / t_copy), size / t_load / (len / t_copy));
	ASSERT_LT(peak - base, 2048);

	free(buf);
	vfio_pci_device_cleanup(peer);
	iommu_cleanup(peer_iommu);
}

/* A rustmig page record: 16 bytes of record header, the 8-byte offset, a page. */
#define PAGE_RECORD	(sizeof(struct rustmig_record_header) + 8 + RUSTMIG_STREAM_PAGE_SIZE)

/* A stream being saved, kept whole to be loaded into the peer. */
struct kept {
	char *buf;
	size_t len, cap;
};

/*
 * Read @data_fd into @k until the temporary end (ENOMSG) or, once stopped, the
 * end (0), or until @most bytes were read: returns 0 then, or -errno.
 */
static int keep_reading_most(int data_fd, struct kept *k, bool stopped, size_t most)
{
	size_t start = k->len;
	ssize_t n;

	while (k->len - start < most) {
		if (k->cap - k->len < (1 << 20)) {
			k->cap = k->cap * 2 + (1 << 20);
			k->buf = realloc(k->buf, k->cap);
			if (!k->buf)
				return -ENOMEM;
		}
		n = read(data_fd, k->buf + k->len, 1 << 20);
		if (n > 0) {
			k->len += n;
			continue;
		}
		if (n == 0)
			return stopped ? 0 : -EPIPE;
		return !stopped && errno == ENOMSG ? 0 : -errno;
	}
	return 0;
}

static int keep_reading(int data_fd, struct kept *k, bool stopped)
{
	return keep_reading_most(data_fd, k, stopped, SIZE_MAX);
}

struct page_writer {
	__u64 *mem;
	size_t pages;
	int fd;
	__u64 region;
	bool stop;
	unsigned long writes;
};

/* Writes a counter into random pages, by the mmap and by region writes, until stopped. */
static void *page_writer(void *arg)
{
	struct page_writer *w = arg;
	unsigned int seed = 7;
	__u64 v;

	while (!READ_ONCE(w->stop)) {
		size_t page = rand_r(&seed) % w->pages;
		size_t word = rand_r(&seed) % (RUSTMIG_STREAM_PAGE_SIZE / 8);

		v = ++w->writes | 0xc0de000000000000ull;
		if (w->writes % 4)
			WRITE_ONCE(w->mem[page * (RUSTMIG_STREAM_PAGE_SIZE / 8) + word], v);
		else if (pwrite(w->fd, &v, 8, w->region + page * RUSTMIG_STREAM_PAGE_SIZE +
				word * 8) != 8)
			break;
	}
	return NULL;
}

/*
 * The cost of a stop and a restart: RUNNING -> STOP -> RUNNING, again and
 * again, each arc timed on its own (VFIO_MIGRATION_TEST_ROUND_TRIPS times,
 * 200 by default). Every arc must succeed; the rates are printed (make bench
 * compares them with mtty's).
 */
TEST_F_TIMEOUT(migration, stop_and_run_round_trips, 600)
{
	const char *n_env = getenv("VFIO_MIGRATION_TEST_ROUND_TRIPS");
	int fd = self->device->fd, i, n = n_env ? atoi(n_env) : 200;
	double t0, t_stop = 0, t_run = 0;

	if (self->want_flags <= 0)
		SKIP(return, "no migration support expected");
	ASSERT_GT(n, 0) TH_LOG("VFIO_MIGRATION_TEST_ROUND_TRIPS=%s: not a count", n_env);
	for (i = 0; i < n; i++) {
		t0 = now();
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL))
			TH_LOG("round trip %d: RUNNING -> STOP: %s", i, strerror(errno));
		t_stop += now() - t0;
		t0 = now();
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL))
			TH_LOG("round trip %d: STOP -> RUNNING: %s", i, strerror(errno));
		t_run += now() - t0;
	}
	ksft_print_msg("stop and run: %.0f round trips/s (RUNNING -> STOP %.1f us, STOP -> RUNNING %.1f us)\n",
		       n / (t_stop + t_run), t_stop / n * 1e6, t_run / n * 1e6);
}

/*
 * PRE_COPY with rustmig's tracking of the state BAR (VFIO_MIGRATION_TEST_BAR):
 * the memory moves while the device runs, then exactly the pages written
 * since, through the mmap or region writes. PRECOPY_INFO counts exactly those
 * pages and the stream's next records hold exactly them, with their contents.
 * Then a writer thread keeps writing random pages while passes are read; the
 * stream, loaded into the peer, gives it the source's memory byte for byte.
 */
TEST_F_TIMEOUT(migration, precopy_resends_exactly_the_pages_written, 600)
{
	const char *peer_bdf = getenv("VFIO_MIGRATION_TEST_PEER");
	const char *bar_env = getenv("VFIO_MIGRATION_TEST_BAR");
	/* Pages 3 to 5 make one run, carried by one record. */
	static const size_t by_mmap[] = { 3, 4, 100 }, by_write[] = { 5, 200 };
	int fd = self->device->fd, save_fd, load_fd, none_fd, bar, i, records = 0;
	size_t found = 0;
	struct page_writer w = {};
	struct vfio_precopy_info info;
	struct vfio_pci_device *peer;
	struct iommu *peer_iommu;
	struct kept k = {};
	struct rustmig_rec rec;
	size_t len, pages, off, at;
	pthread_t thread;
	__u64 *src, *dst, v;

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_PRE_COPY) ||
	    !env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig") || !peer_bdf || !bar_env)
		SKIP(return, "no rustmig PRE_COPY with a peer and a state BAR");
	bar = atoi(bar_env);
	peer_iommu = iommu_init(MODE_IOMMUFD);
	peer = vfio_pci_device_init(peer_bdf, peer_iommu);
	src = self->device->bars[bar].vaddr;
	dst = peer->bars[bar].vaddr;
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	len = self->device->bars[bar].info.size;
	pages = len / RUSTMIG_STREAM_PAGE_SIZE;
	ASSERT_GT(pages, 200);
	for (off = 0; off < len / 8; off++) {
		WRITE_ONCE(src[off], pattern(off));
		WRITE_ONCE(dst[off], 0);
	}

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_EQ(0, keep_reading(save_fd, &k, false));
	ksft_print_msg("initial pass: %zu bytes\n", k.len);
	/* The header and the whole memory, while the device runs. */
	ASSERT_GT(k.len, len);
	ASSERT_EQ(RUSTMIG_STREAM_VERSION_MAJOR_PRECOPY,
		  rustmig_get16(k.buf + offsetof(struct rustmig_stream_header, version_major)));
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(0, info.initial_bytes);
	ASSERT_EQ(0, info.dirty_bytes);

	for (i = 0; i < 3; i++)
		WRITE_ONCE(src[by_mmap[i] * (RUSTMIG_STREAM_PAGE_SIZE / 8) + 1], 0xdead0000 + i);
	for (i = 0; i < 2; i++) {
		v = 0xbeef0000 + i;
		ASSERT_EQ(8, pwrite(fd, &v, 8, self->device->bars[bar].info.offset +
				    by_write[i] * RUSTMIG_STREAM_PAGE_SIZE + 16));
	}
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(0, info.initial_bytes);
	ASSERT_EQ(3 * PAGE_RECORD + 2 * RUSTMIG_STREAM_PAGE_SIZE, info.dirty_bytes);

	at = k.len;
	ASSERT_EQ(0, keep_reading(save_fd, &k, false));
	ASSERT_EQ(3 * PAGE_RECORD + 2 * RUSTMIG_STREAM_PAGE_SIZE, k.len - at);
	for (off = at; rustmig_record_at(k.buf, k.len, off, &rec); off += rustmig_rec_size(&rec)) {
		__u64 page_off = rustmig_get64(k.buf + off + sizeof(struct rustmig_record_header));
		size_t n = (rec.len - 8) / RUSTMIG_STREAM_PAGE_SIZE, page, p;

		ASSERT_TRUE(rec.crc_ok);
		ASSERT_EQ(8 + n * RUSTMIG_STREAM_PAGE_SIZE, rec.len);
		ASSERT_EQ(0, page_off % RUSTMIG_STREAM_PAGE_SIZE);
		for (p = 0; p < n; p++) {
			bool want = false;

			page = page_off / RUSTMIG_STREAM_PAGE_SIZE + p;
			for (i = 0; i < 3; i++)
				want |= page == by_mmap[i];
			for (i = 0; i < 2; i++)
				want |= page == by_write[i];
			ASSERT_TRUE(want) TH_LOG("page %zu was not written", page);
		}
		ASSERT_EQ(0, memcmp(k.buf + off + sizeof(struct rustmig_record_header) + 8,
				    (char *)src + page_off, n * RUSTMIG_STREAM_PAGE_SIZE));
		found += n;
		records++;
	}
	ASSERT_EQ(5, found);
	ASSERT_EQ(3, records);
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(0, info.dirty_bytes);

	/*
	 * A page written again after a pass sent it is held back for the last
	 * pass: PRECOPY_INFO counts only the page written for the first time
	 * since, and the reads return exactly that.
	 */
	WRITE_ONCE(src[by_mmap[0] * (RUSTMIG_STREAM_PAGE_SIZE / 8) + 2], 0xfeed0000);
	WRITE_ONCE(src[150 * (RUSTMIG_STREAM_PAGE_SIZE / 8) + 2], 0xfeed0001);
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(PAGE_RECORD, info.dirty_bytes)
		TH_LOG("page %zu written again (held back) and page 150 for the first time",
		       by_mmap[0]);
	at = k.len;
	ASSERT_EQ(0, keep_reading(save_fd, &k, false));
	ASSERT_EQ(PAGE_RECORD, k.len - at);
	ASSERT_TRUE(rustmig_record_at(k.buf, k.len, at, &rec));
	ASSERT_EQ(150 * RUSTMIG_STREAM_PAGE_SIZE,
		  rustmig_get64(k.buf + at + sizeof(struct rustmig_record_header)));
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(0, info.dirty_bytes);

	/*
	 * The race: passes read while a writer keeps writing (at most 256 KiB at a
	 * time: a writer faster than the reader never lets a pass end).
	 */
	w.mem = src;
	w.pages = pages;
	w.fd = fd;
	w.region = self->device->bars[bar].info.offset;
	ASSERT_EQ(0, pthread_create(&thread, NULL, page_writer, &w));
	/* The writer and the reader on different CPUs, where there are two. */
	ASSERT_LE(0, pin_thread(pthread_self(), 0));
	ASSERT_LE(0, pin_thread(thread, 1));
	for (i = 0; i < 20; i++) {
		ASSERT_EQ(0, keep_reading_most(save_fd, &k, false, 256 << 10));
		usleep(2000);
	}
	WRITE_ONCE(w.stop, true);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_GT(w.writes, 0);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &none_fd));
	ASSERT_EQ(-1, none_fd);
	ASSERT_EQ(0, keep_reading(save_fd, &k, true));
	close(save_fd);

	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	for (off = 0; off < k.len; off += 65533) {
		size_t n = k.len - off < 65533 ? k.len - off : 65533;

		ASSERT_EQ((ssize_t)n, write(load_fd, k.buf + off, n))
			TH_LOG("write at %zu: %s", off, strerror(errno));
	}
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_STOP, NULL));
	close(load_fd);
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	for (off = 0; off < len / 8 && READ_ONCE(dst[off]) == READ_ONCE(src[off]); off++)
		;
	ASSERT_EQ(len / 8, off) TH_LOG("the peer differs at BAR%d offset %zu", bar, off * 8);
	ksft_print_msg("pre-copy %s -> %s: %lu writes during the passes, stream %zu bytes, %s\n",
		       device_bdf, peer_bdf, w.writes, k.len, "bit-exact");

	free(k.buf);
	vfio_pci_device_cleanup(peer);
	iommu_cleanup(peer_iommu);
}

/* QEMU's edu: its DMA registers, command bits and the buffer's bus address. */
#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_COUNT	0x90
#define EDU_DMA_CMD	0x98
#define EDU_DMA_RUN	0x1
#define EDU_DMA_TO_RAM	0x2
#define EDU_DMA_BUF	0x40000

/* Waits up to 10 s for edu's transfer to land: 0, or -ETIMEDOUT. */
static int edu_dma_wait(struct vfio_pci_device *device)
{
	int i;

	for (i = 0; i < 1000; i++) {
		if (!(bar_read64(device, 0, EDU_DMA_CMD) & EDU_DMA_RUN))
			return 0;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

/* Starts an edu transfer, and waits until it landed if @wait. 0 or -errno. */
static int edu_dma(struct vfio_pci_device *device, __u64 src, __u64 dst, __u64 count,
		   __u64 cmd, bool wait)
{
	int ret;

	ret = bar_write64(device, 0, EDU_DMA_SRC, src);
	ret = ret ?: bar_write64(device, 0, EDU_DMA_DST, dst);
	ret = ret ?: bar_write64(device, 0, EDU_DMA_COUNT, count);
	ret = ret ?: bar_write64(device, 0, EDU_DMA_CMD, cmd);
	return ret ?: (wait ? edu_dma_wait(device) : 0);
}

/* The bus address of edu_leave_dma_cmd()'s transfer: below edu's 28-bit DMA mask. */
#define EDU_CMD_IOVA	0x300000ULL

/*
 * Leave @cmd (without the run bit) in edu's DMA command register: the only
 * way is a transfer with that command, here of 8 bytes between edu's buffer
 * and a page mapped at EDU_CMD_IOVA for it in @iommu. 0 or -errno.
 */
static int edu_leave_dma_cmd(struct vfio_pci_device *device, struct iommu *iommu, __u64 cmd)
{
	struct dma_region region = { .iova = EDU_CMD_IOVA, .size = 4096 };
	bool to_ram = cmd & EDU_DMA_TO_RAM;
	int ret;

	region.vaddr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region.vaddr == MAP_FAILED)
		return -errno;
	memset(region.vaddr, 0, 4096);
	ret = __iommu_map(iommu, &region);
	if (!ret) {
		vfio_pci_cmd_set(device, PCI_COMMAND_MASTER);
		ret = edu_dma(device, to_ram ? EDU_DMA_BUF : EDU_CMD_IOVA,
			      to_ram ? EDU_CMD_IOVA : EDU_DMA_BUF, 8, cmd | EDU_DMA_RUN, true);
		__iommu_unmap(iommu, &region, NULL);
	}
	munmap(region.vaddr, 4096);
	return ret;
}

/*
 * Whether edu's registers are the same on @a and @b (full width, as its
 * backend saves them); the first that differs goes to @at, its values to
 * @va and @vb.
 */
static bool edu_same_registers(struct vfio_pci_device *a, struct vfio_pci_device *b, size_t *at,
			       __u64 *va, __u64 *vb)
{
	for (*at = 0; *at < ARRAY_SIZE(edu_state_regs); (*at)++) {
		if (edu_state_regs[*at] < 0x80) {
			*va = bar_read32(a, 0, edu_state_regs[*at]);
			*vb = bar_read32(b, 0, edu_state_regs[*at]);
		} else {
			*va = bar_read64(a, 0, edu_state_regs[*at]);
			*vb = bar_read64(b, 0, edu_state_regs[*at]);
		}
		if (*va != *vb)
			return false;
	}
	return true;
}

/*
 * A version 2.0 stream whose end record comes before every page of the
 * memory did is refused: the first record of the first pass (a whole unit of
 * pages) is cut out of a PRE_COPY save. Each record carries its own check and
 * a 2.0 header has no length, so only the end record can tell; the load
 * fails with EINVAL into ERROR, and a reset brings the device back.
 */
TEST_F(migration, precopy_stream_with_pages_missing_is_refused)
{
	const char *peer_bdf = getenv("VFIO_MIGRATION_TEST_PEER");
	int fd = self->device->fd, save_fd, load_fd, ret;
	struct vfio_pci_device *peer;
	struct iommu *peer_iommu;
	struct rustmig_rec rec;
	struct kept k = {};
	size_t first, cut;

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_PRE_COPY) ||
	    !env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig") || !peer_bdf ||
	    !getenv("VFIO_MIGRATION_TEST_BAR"))
		SKIP(return, "no rustmig PRE_COPY with a peer and a state BAR");
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_EQ(0, keep_reading(save_fd, &k, false));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, NULL));
	ASSERT_EQ(0, keep_reading(save_fd, &k, true));
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_EQ(RUSTMIG_STREAM_VERSION_MAJOR_PRECOPY,
		  rustmig_get16(k.buf + offsetof(struct rustmig_stream_header, version_major)));

	first = rustmig_header_len_field(k.buf);
	ASSERT_TRUE(rustmig_record_at(k.buf, k.len, first, &rec));
	ASSERT_GE(rec.len, 8 + RUSTMIG_STREAM_PAGE_SIZE) TH_LOG("the first record holds no page");
	cut = rustmig_rec_size(&rec);
	memmove(k.buf + first, k.buf + first + cut, k.len - first - cut);
	k.len -= cut;

	peer_iommu = iommu_init(MODE_IOMMUFD);
	peer = vfio_pci_device_init(peer_bdf, peer_iommu);
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	/* Refused by the write of the end record, and then by the arc to STOP. */
	ret = write_all(load_fd, k.buf, k.len);
	ASSERT_EQ(-EINVAL, ret) TH_LOG("a stream missing the %zu bytes of its first record: %s",
				       cut, strerror(-ret));
	ASSERT_NE(0, set_state(peer->fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(peer->fd));
	close(load_fd);
	ASSERT_EQ(0, ioctl(peer->fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(peer->fd));
	vfio_pci_device_cleanup(peer);
	iommu_cleanup(peer_iommu);
	free(k.buf);
}

/*
 * Save this device, load the stream into the peer, save the peer: both
 * streams are the same, byte for byte (the device state arrived whole; the
 * identities match). The two devices are first given different states (edu's
 * registers, or the state BAR's bytes), and the peer's own stream must differ
 * before the load, so that the equality after it shows the state moved. On
 * edu every register its backend saves is then compared between the two,
 * the DMA command too: it is not restored (Documentation, Limitations), so
 * the same transfer first leaves the same command on both, which the load
 * must keep.
 */
TEST_F(migration, peer_saves_the_stream_it_loaded)
{
	const char *peer_bdf = getenv("VFIO_MIGRATION_TEST_PEER");
	bool edu = is_edu(self->device) && hardware_state();
	struct vfio_pci_device *peer;
	struct iommu *peer_iommu;
	long long len, peer_len, at;
	char *stream, *again;
	__u64 va, vb;
	size_t reg;
	bool known;
	int load_fd;

	if (self->want_flags <= 0 || !peer_bdf)
		SKIP(return, "no peer device given");
	peer_iommu = iommu_init(MODE_IOMMUFD);
	peer = vfio_pci_device_init(peer_bdf, peer_iommu);
	if (edu) {
		ASSERT_EQ(0, edu_leave_dma_cmd(self->device, self->iommu, EDU_DMA_TO_RAM));
		ASSERT_EQ(0, edu_leave_dma_cmd(peer, peer_iommu, EDU_DMA_TO_RAM));
	}
	/* Two different states: the peer's must be replaced by this device's. */
	known = perturb_state(self->device, 1) != -ENOENT;
	ASSERT_TRUE(!known || !perturb_state(peer, 2));
	stream = save_stream(self->device->fd, &len);
	ASSERT_NE(NULL, stream);
	again = save_stream(peer->fd, &peer_len);
	ASSERT_NE(NULL, again);
	if (known)
		ASSERT_FALSE(same_stream(stream, len, again, peer_len, &at))
			TH_LOG("the peer's state was this device's before the load");
	free(again);
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_EQ(0, write_all(load_fd, stream, len));
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(load_fd);
	if (edu)
		ASSERT_TRUE(edu_same_registers(self->device, peer, &reg, &va, &vb))
			TH_LOG("loaded, the peer's edu register %#llx is %#llx, the source's %#llx",
			       (unsigned long long)edu_state_regs[reg], (unsigned long long)vb,
			       (unsigned long long)va);
	again = save_stream(peer->fd, &peer_len);
	ASSERT_NE(NULL, again);
	ASSERT_TRUE(same_stream(stream, len, again, peer_len, &at))
		TH_LOG("the streams differ at byte %lld (lengths %lld, %lld)", at, len, peer_len);
	ksft_print_msg("%s -> %s: the peer saves the %lld-byte stream it loaded\n",
		       device_bdf, peer_bdf, len);
	free(stream);
	free(again);
	vfio_pci_device_cleanup(peer);
	iommu_cleanup(peer_iommu);
}

/*
 * Bad region writes to a BAR get the errno vfio-pci gives, whether the BAR
 * goes through vfio_pci_core or through the driver (a trapped BAR): EINVAL at
 * or past its end, a write across the end cut at it, EFAULT for a bad user
 * pointer, EIO while the user has memory decoding off.
 */
TEST_F(migration, bar_region_writes_refuse_bad_input_like_vfio_pci)
{
	int fd = self->device->fd, bar = largest_bar(self->device);
	__u64 offset, size, zero = 0;
	void *bad;
	__u16 cmd;

	if (strchr(device_bdf, '-'))
		SKIP(return, "an mdev device's regions are its driver's, not vfio-pci's");
	ASSERT_GE(bar, 0);
	offset = self->device->bars[bar].info.offset;
	size = self->device->bars[bar].info.size;

	ASSERT_EQ(-1, pwrite(fd, &zero, 4, offset + size));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, pwrite(fd, &zero, 4, offset + size + 4096));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(4, pwrite(fd, &zero, 8, offset + size - 4));
	bad = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, bad);
	ASSERT_EQ(0, munmap(bad, 4096));
	ASSERT_EQ(-1, pwrite(fd, bad, 4, offset + size - 4));
	ASSERT_EQ(EFAULT, errno);

	cmd = vfio_pci_config_readw(self->device, PCI_COMMAND);
	vfio_pci_config_writew(self->device, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
	ASSERT_EQ(-1, pwrite(fd, &zero, 4, offset + size - 4));
	ASSERT_EQ(EIO, errno);
	vfio_pci_config_writew(self->device, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY);
	ASSERT_EQ(4, pwrite(fd, &zero, 4, offset + size - 4));
}

/* DMA dirty logging over [@iova, @iova + @len) with 4 KiB pages. */
static int log_start(int fd, __u64 iova, __u64 len)
{
	struct vfio_device_feature_dma_logging_range range = { .iova = iova, .length = len };
	struct vfio_device_feature_dma_logging_control control = {
		.page_size = 4096,
		.num_ranges = 1,
		.ranges = (uintptr_t)&range,
	};

	return device_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
			      &control, sizeof(control));
}

static int log_stop(int fd)
{
	return device_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
			      NULL, 0);
}

/* Reads and clears the log of up to 64 pages at @iova into *@bits. */
static int log_report(int fd, __u64 iova, __u64 len, __u64 *bits)
{
	struct vfio_device_feature_dma_logging_report report = {
		.iova = iova,
		.length = len,
		.page_size = 4096,
		.bitmap = (uintptr_t)bits,
	};

	*bits = 0;
	return device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			      &report, sizeof(report));
}

#define LOG_PAGES	16
/* Below edu's 28-bit DMA address mask. */
#define LOG_IOVA	0x200000ULL

/*
 * DMA dirty logging, as the driver offers it (VFIO_MIGRATION_TEST_DMA_LOG):
 * not at all (ENOTTY), for a device that does no DMA (always clean), or for
 * edu, whose transfers to memory must be reported page by page, exactly once
 * after they landed, and whose transfers from memory dirty nothing.
 */
TEST_F(migration, dma_logging_reports_the_pages_the_device_wrote)
{
	const char *mode = getenv("VFIO_MIGRATION_TEST_DMA_LOG");
	const size_t size = LOG_PAGES * 4096;
	int fd = self->device->fd, i, tries;
	struct dma_region region = {};
	bool in_flight = false;
	unsigned char *mem;
	__u64 bits;

	if (!mode)
		SKIP(return, "the device's DMA logging is not given");
	if (!strcmp(mode, "none")) {
		ASSERT_EQ(-ENOTTY, log_start(fd, LOG_IOVA, size));
		ASSERT_EQ(-ENOTTY, log_report(fd, LOG_IOVA, size, &bits));
		return;
	}
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	memset(mem, 0, size);
	region.vaddr = mem;
	region.iova = LOG_IOVA;
	region.size = size;
	iommu_map(self->iommu, &region);

	ASSERT_EQ(-EINVAL, log_report(fd, LOG_IOVA, size, &bits));	/* not started */
	ASSERT_EQ(0, log_start(fd, LOG_IOVA, size));
	ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
	ASSERT_EQ(0, bits);

	if (!strcmp(mode, "edu")) {
		/* Every write to BAR0 must be seen: it cannot be mmapped. */
		ASSERT_EQ(0, self->device->bars[0].info.flags & VFIO_REGION_INFO_FLAG_MMAP);
		ASSERT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
					   self->device->bars[0].info.offset));
		ASSERT_EQ(EINVAL, errno);
		vfio_pci_cmd_set(self->device, PCI_COMMAND_MASTER);

		/* Page 0 into edu's buffer: a read of memory, nothing dirty. */
		for (i = 0; i < 4096; i++)
			mem[i] = i * 7 + 1;
		ASSERT_EQ(0, edu_dma(self->device, LOG_IOVA, EDU_DMA_BUF, 4096, EDU_DMA_RUN, true));
		ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
		ASSERT_EQ(0, bits);

		/* The buffer back to memory across pages 3 and 4. */
		ASSERT_EQ(0, edu_dma(self->device, EDU_DMA_BUF, LOG_IOVA + 3 * 4096 + 2048, 4096,
				     EDU_DMA_RUN | EDU_DMA_TO_RAM, true));
		ASSERT_EQ(0, memcmp(mem, mem + 3 * 4096 + 2048, 4096))
			TH_LOG("the transfer did not land");
		ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
		ASSERT_EQ((1ULL << 3) | (1ULL << 4), bits);
		ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
		ASSERT_EQ(0, bits);

		/*
		 * A report while a transfer is in flight (edu lands it ~100 ms after
		 * the command) reports its pages, and so does the next one, after it
		 * landed. Retried until a report saw the transfer still running.
		 */
		for (tries = 0; tries < 5 && !in_flight; tries++) {
			ASSERT_EQ(0, edu_dma(self->device, EDU_DMA_BUF, LOG_IOVA + 9 * 4096, 100,
					     EDU_DMA_RUN | EDU_DMA_TO_RAM, false));
			ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
			ASSERT_EQ(1ULL << 9, bits);
			in_flight = bar_read64(self->device, 0, EDU_DMA_CMD) & EDU_DMA_RUN;
			ASSERT_EQ(0, edu_dma_wait(self->device));
			ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
			if (in_flight)
				ASSERT_EQ(1ULL << 9, bits);
			ASSERT_EQ(0, log_report(fd, LOG_IOVA, size, &bits));
			ASSERT_EQ(0, bits);
		}
		ASSERT_TRUE(in_flight) TH_LOG("no report saw a transfer in flight");
		ksft_print_msg("edu: DMA to memory reported page by page, %d tries\n", tries);
	}

	ASSERT_EQ(0, log_stop(fd));
	ASSERT_EQ(-EINVAL, log_report(fd, LOG_IOVA, size, &bits));
	iommu_unmap(self->iommu, &region);
	munmap(mem, size);
}

/* DMA_LOGGING_START of @n ranges (iova, length pairs) at @page_size: 0 or -errno. */
static int log_start_ranges(int fd, const __u64 *ranges, int n, __u64 page_size)
{
	struct vfio_device_feature_dma_logging_range r[4] = {};
	struct vfio_device_feature_dma_logging_control control = {
		.page_size = page_size,
		.num_ranges = n,
		.ranges = (uintptr_t)r,
	};
	int i;

	for (i = 0; i < n && i < 4; i++) {
		r[i].iova = ranges[2 * i];
		r[i].length = ranges[2 * i + 1];
	}
	return device_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
			      &control, sizeof(control));
}

/* DMA_LOGGING_REPORT at @page_size into @bits as it is (not cleared): 0 or -errno. */
static int log_report_into(int fd, __u64 iova, __u64 len, __u64 page_size, __u64 *bits)
{
	struct vfio_device_feature_dma_logging_report report = {
		.iova = iova,
		.length = len,
		.page_size = page_size,
		.bitmap = (uintptr_t)bits,
	};

	return device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			      &report, sizeof(report));
}

/*
 * The rules of DMA logging around the transfers: a second START while
 * logging runs is refused with EBUSY and leaves the first log working; START
 * takes several ranges; REPORT only sets bits (a bitmap handed in with bits
 * set keeps them); a REPORT may use another page size than START (8 KiB
 * pages over a 4 KiB log); closing the device stops logging (a REPORT after
 * reopening finds none).
 */
TEST_F(migration, dma_logging_follows_the_uapi_rules)
{
	const char *mode = getenv("VFIO_MIGRATION_TEST_DMA_LOG");
	const size_t size = LOG_PAGES * 4096;
	const __u64 two[] = {
		LOG_IOVA, size / 2, LOG_IOVA + size / 2, size / 2,
	};
	const __u64 prefill = (1ULL << 0) | (1ULL << 15);
	int fd = self->device->fd;
	struct dma_region region = {};
	bool edu;
	unsigned char *mem;
	__u64 bits;

	if (!mode || !strcmp(mode, "none"))
		SKIP(return, "the device offers no DMA logging");
	edu = !strcmp(mode, "edu");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	memset(mem, 0, size);
	region.vaddr = mem;
	region.iova = LOG_IOVA;
	region.size = size;
	iommu_map(self->iommu, &region);
	if (edu)
		vfio_pci_cmd_set(self->device, PCI_COMMAND_MASTER);

	/* Two ranges, then a second START: EBUSY, and the first log still works. */
	ASSERT_EQ(0, log_start_ranges(fd, two, 2, 4096));
	ASSERT_EQ(-EBUSY, log_start_ranges(fd, two, 1, 4096));
	ASSERT_EQ(-EBUSY, log_start_ranges(fd, two, 2, 8192));
	if (edu)
		/* Into the second range, page 9. */
		ASSERT_EQ(0, edu_dma(self->device, EDU_DMA_BUF, LOG_IOVA + 9 * 4096, 64,
				     EDU_DMA_RUN | EDU_DMA_TO_RAM, true));
	bits = prefill;
	ASSERT_EQ(0, log_report_into(fd, LOG_IOVA, size, 4096, &bits));
	ASSERT_EQ(prefill | (edu ? 1ULL << 9 : 0), bits) TH_LOG("bits %#llx", bits);

	/* 8 KiB report pages over the 4 KiB log: 4 KiB pages 3 and 4 are 8 KiB pages 1, 2. */
	if (edu)
		ASSERT_EQ(0, edu_dma(self->device, EDU_DMA_BUF, LOG_IOVA + 3 * 4096 + 2048, 4096,
				     EDU_DMA_RUN | EDU_DMA_TO_RAM, true));
	bits = 0;
	ASSERT_EQ(0, log_report_into(fd, LOG_IOVA, size, 8192, &bits));
	ASSERT_EQ(edu ? (1ULL << 1) | (1ULL << 2) : 0, bits) TH_LOG("bits %#llx", bits);
	bits = 0;
	ASSERT_EQ(0, log_report_into(fd, LOG_IOVA, size, 4096, &bits));
	ASSERT_EQ(0, bits) TH_LOG("reported twice: %#llx", bits);

	/* STOP, then START again is fine. */
	ASSERT_EQ(0, log_stop(fd));
	ASSERT_EQ(0, log_start_ranges(fd, two, 1, 4096));

	/* Closing the device stops logging. */
	iommu_unmap(self->iommu, &region);
	vfio_pci_device_cleanup(self->device);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
	fd = self->device->fd;
	bits = 0;
	ASSERT_EQ(-EINVAL, log_report_into(fd, LOG_IOVA, size, 4096, &bits));
	ASSERT_EQ(0, log_start_ranges(fd, two, 1, 4096));
	ASSERT_EQ(0, log_stop(fd));
	munmap(mem, size);
}

#define EDU_IRQ_STATUS	0x24
#define EDU_IRQ_RAISE	0x60
#define EDU_IRQ_ACK	0x64

/* Interrupts signalled on @efd since the last call (it is non-blocking). */
static __u64 interrupts(int efd)
{
	__u64 n = 0;

	return read(efd, &n, sizeof(n)) == sizeof(n) ? n : 0;
}

/*
 * A stopped device raises no interrupt (uAPI: STOP means no interrupts): edu
 * saved with an interrupt pending is loaded through RESUMING, and nothing is
 * signalled until the device runs again; saved again before that, it gives
 * the stream it loaded; its interrupt status is then the saved one. The
 * interrupt path itself works: a raise in RUNNING signals.
 */
TEST_F(migration, stopped_device_raises_no_interrupt)
{
	int fd = self->device->fd, efd, load_fd, save_fd;
	__u64 raised, during;
	long long len, at;
	char *stream, *again;
	__u32 st;

	if (self->want_flags <= 0 || !is_edu(self->device) || !hardware_state())
		SKIP(return,
		     "for edu migrated by its registers, whose interrupts a register raises");
	/* edu has an MSI capability (one vector): no vector is a failure, not a reason to skip. */
	ASSERT_NE(0, self->device->msi_info.count)
		TH_LOG("edu has MSI, but VFIO_DEVICE_GET_IRQ_INFO gives %u vectors (flags %#x)",
		       self->device->msi_info.count, self->device->msi_info.flags);
	vfio_pci_cmd_set(self->device, PCI_COMMAND_MASTER);
	vfio_pci_irq_enable(self->device, VFIO_PCI_MSI_IRQ_INDEX, 0, 1);
	efd = self->device->msi_eventfds[0];
	fcntl_set_nonblock(efd);
	interrupts(efd);

	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_RAISE, 0x1));
	usleep(100 * 1000);
	raised = interrupts(efd);
	ASSERT_GT(raised, 0) TH_LOG("a raise in RUNNING signals nothing: no interrupt path");
	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_ACK, ~0U));

	/* Saved with status 0x2 pending, then acknowledged. */
	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_RAISE, 0x2));
	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);
	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_ACK, ~0U));
	usleep(100 * 1000);
	interrupts(efd);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_EQ(0, write_all(load_fd, stream, len));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	usleep(200 * 1000);
	during = interrupts(efd);
	ASSERT_EQ(0, during) TH_LOG("%llu interrupt(s) while the device was stopped", during);
	close(load_fd);
	/* Saved again before it runs, it still has the interrupt pending. */
	again = malloc(len + 1);
	ASSERT_NE(NULL, again);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	ASSERT_EQ(len, read_all(save_fd, again, len + 1, 4096));
	close(save_fd);
	ASSERT_TRUE(same_stream(stream, len, again, len, &at))
		TH_LOG("saved before running, the loaded state differs at byte %lld", at);
	free(again);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_EQ(4, pread(fd, &st, 4, self->device->bars[0].info.offset + EDU_IRQ_STATUS));
	ASSERT_EQ(0x2, st);
	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_ACK, ~0U));
	vfio_pci_irq_disable(self->device, VFIO_PCI_MSI_IRQ_INDEX);
	free(stream);
}

/* VFIO_DEVICE_SET_IRQS on INTx: @action for @count vectors, with eventfd @efd or no data. */
static int intx_set(int fd, __u32 action, __u32 count, int efd)
{
	__u64 buf[(sizeof(struct vfio_irq_set) + sizeof(int) + 7) / 8] = {};
	struct vfio_irq_set *set = (void *)buf;

	set->argsz = sizeof(buf);
	set->flags = action | (efd >= 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE);
	set->index = VFIO_PCI_INTX_IRQ_INDEX;
	set->count = count;
	if (efd >= 0)
		memcpy(set->data, &efd, sizeof(efd));
	return ioctl(fd, VFIO_DEVICE_SET_IRQS, set) ? -errno : 0;
}

/*
 * Acknowledge every interrupt of edu @device, which lowers its INTx line,
 * then unmask INTx (vfio-pci masks it when it fires): 0 or -errno.
 */
static int edu_intx_ack(struct vfio_pci_device *device)
{
	return bar_write32(device, 0, EDU_IRQ_ACK, ~0U) ?:
	       intx_set(device->fd, VFIO_IRQ_SET_ACTION_UNMASK, 1, -1);
}

/*
 * Route edu @device's INTx to a new non-blocking eventfd, its interrupts
 * acknowledged first: the eventfd, or -errno.
 */
static int edu_intx_enable(struct vfio_pci_device *device)
{
	int efd, ret;

	ret = bar_write32(device, 0, EDU_IRQ_ACK, ~0U);
	if (ret)
		return ret;
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return -errno;
	ret = intx_set(device->fd, VFIO_IRQ_SET_ACTION_TRIGGER, 1, efd);
	if (ret) {
		close(efd);
		return ret;
	}
	return efd;
}

/* Interrupts signalled on @efd within @ms milliseconds (after the first, those already there). */
static __u64 interrupts_within(int efd, int ms)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return 0;
	return interrupts(efd);
}

/*
 * The interrupts the CPUs took on the IRQ line of vfio-intx(@bdf), from
 * /proc/interrupts (the line's, whoever shares it), or -1 if there is none.
 */
static long long intx_irq_count(const char *bdf)
{
	char name[64], line[4096], *p, *end;
	long long total = -1, v;
	FILE *f = fopen("/proc/interrupts", "r");

	if (!f)
		return -1;
	snprintf(name, sizeof(name), "vfio-intx(%s)", bdf);
	while (fgets(line, sizeof(line), f)) {
		p = strchr(line, ':');
		if (!p || !strstr(line, name))
			continue;
		for (total = 0, p++;; p = end) {
			v = strtoll(p, &end, 10);
			if (end == p)
				break;
			total += v;
		}
	}
	fclose(f);
	return total;
}

/*
 * edu's legacy interrupt (INTx, which edu raises while MSI is off) follows
 * the device state as MSI does: with INTx routed to an eventfd, a raise in
 * RUNNING signals it (twice, INTx unmasked after each), and the mask that
 * vfio-pci sets when INTx fires holds while edu keeps its line asserted
 * (500 ms without an acknowledgment cost one interrupt, not a storm); a
 * stream saved with
 * an interrupt pending and loaded through RESUMING signals nothing while the
 * device is stopped and signals once it runs; and after a round trip to the
 * peer (VFIO_MIGRATION_TEST_PEER, another edu of this driver) the peer
 * signals the interrupt pending in the stream, on its own eventfd only, and
 * then one raised on it.
 */
TEST_F(migration, intx_follows_the_device_state_and_migrates)
{
	const char *peer_bdf = getenv("VFIO_MIGRATION_TEST_PEER");
	struct vfio_irq_info info = { .argsz = sizeof(info), .index = VFIO_PCI_INTX_IRQ_INDEX };
	int fd = self->device->fd, efd, peer_efd, load_fd, i;
	long long len, irqs = 0, taken;
	struct vfio_pci_device *peer;
	struct iommu *peer_iommu;
	char *stream;
	__u64 n;
	__u32 st;

	if (self->want_flags <= 0 || !is_edu(self->device) || !hardware_state())
		SKIP(return,
		     "for edu migrated by its registers, whose interrupts a register raises");
	ASSERT_NE(NULL, peer_bdf)
		TH_LOG("edu's INTx round trip needs a second edu: VFIO_MIGRATION_TEST_PEER");
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, &info));
	ASSERT_EQ(1, info.count)
		TH_LOG("edu has an interrupt pin, but INTx reports %u vectors", info.count);
	ASSERT_TRUE(info.flags & VFIO_IRQ_INFO_EVENTFD);
	efd = edu_intx_enable(self->device);
	ASSERT_LE(0, efd) TH_LOG("INTx to an eventfd: %s", strerror(-efd));
	n = interrupts_within(efd, 200);
	ASSERT_EQ(0, n) TH_LOG("%llu INTx signal(s) with every interrupt acknowledged", n);

	/*
	 * RUNNING: each raise signals, once acknowledged and unmasked nothing
	 * more. The first is acknowledged only 500 ms after it signalled: INTx,
	 * masked by vfio-pci when it fired, interrupts no more meanwhile.
	 */
	for (i = 0; i < 2; i++) {
		if (!i) {
			irqs = intx_irq_count(device_bdf);
			ASSERT_LE(0, irqs)
				TH_LOG("no vfio-intx(%s) in /proc/interrupts", device_bdf);
		}
		ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_RAISE, 0x1));
		n = interrupts_within(efd, 2000);
		ASSERT_LT(0, n) TH_LOG("raise %d in RUNNING: no INTx signal in 2 s", i + 1);
		if (!i) {
			usleep(500 * 1000);
			taken = intx_irq_count(device_bdf) - irqs;
			n = interrupts(efd);
			ASSERT_EQ(0, n) TH_LOG("%llu more INTx signal(s) while it was masked", n);
			ASSERT_GE(3, taken)
				TH_LOG("INTx masked, line held 500 ms: %lld IRQs on vfio-intx(%s)",
				       taken, device_bdf);
		}
		ASSERT_EQ(0, edu_intx_ack(self->device));
		n = interrupts_within(efd, 200);
		ASSERT_EQ(0, n)
			TH_LOG("raise %d: %llu INTx signal(s) after the interrupt was acknowledged",
			       i + 1, n);
	}

	/* Saved with status 0x2 pending, acknowledged, loaded back: silent until RUNNING. */
	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_RAISE, 0x2));
	ASSERT_LT(0, interrupts_within(efd, 2000));
	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);
	ASSERT_EQ(0, edu_intx_ack(self->device));
	interrupts_within(efd, 200);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_EQ(0, write_all(load_fd, stream, len));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	n = interrupts_within(efd, 300);
	ASSERT_EQ(0, n) TH_LOG("%llu INTx signal(s) while the device was stopped", n);
	close(load_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	n = interrupts_within(efd, 2000);
	ASSERT_LT(0, n) TH_LOG("the stream's pending interrupt signalled no INTx once RUNNING");
	st = bar_read32(self->device, 0, EDU_IRQ_STATUS);
	ASSERT_EQ(0x2, st) TH_LOG("edu's interrupt status is %#x, the stream's 0x2", st);
	ASSERT_EQ(0, edu_intx_ack(self->device));
	interrupts_within(efd, 200);
	free(stream);

	/* To the peer, with status 0x4 pending. */
	peer_iommu = iommu_init(MODE_IOMMUFD);
	peer = vfio_pci_device_init(peer_bdf, peer_iommu);
	ASSERT_TRUE(is_edu(peer)) TH_LOG("the peer %s is not an edu", peer_bdf);
	peer_efd = edu_intx_enable(peer);
	ASSERT_LE(0, peer_efd) TH_LOG("the peer's INTx to an eventfd: %s", strerror(-peer_efd));
	n = interrupts_within(peer_efd, 200);
	ASSERT_EQ(0, n) TH_LOG("%llu INTx signal(s) on the peer before the load", n);
	ASSERT_EQ(0, bar_write32(self->device, 0, EDU_IRQ_RAISE, 0x4));
	ASSERT_LT(0, interrupts_within(efd, 2000));
	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);
	ASSERT_EQ(0, edu_intx_ack(self->device));
	interrupts_within(efd, 200);
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_EQ(0, write_all(load_fd, stream, len));
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_STOP, NULL));
	n = interrupts_within(peer_efd, 300);
	ASSERT_EQ(0, n) TH_LOG("%llu INTx signal(s) while the peer was stopped", n);
	close(load_fd);
	ASSERT_EQ(0, set_state(peer->fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	n = interrupts_within(peer_efd, 2000);
	ASSERT_LT(0, n) TH_LOG("the peer, RUNNING, signalled no INTx for the stream's pending 0x4");
	st = bar_read32(peer, 0, EDU_IRQ_STATUS);
	ASSERT_EQ(0x4, st) TH_LOG("the peer's interrupt status is %#x, the stream's 0x4", st);
	n = interrupts(efd);
	ASSERT_EQ(0, n) TH_LOG("%llu INTx signal(s) on the source for the peer's interrupt", n);
	ASSERT_EQ(0, edu_intx_ack(peer));
	interrupts_within(peer_efd, 200);

	/* The destination's own raise. */
	ASSERT_EQ(0, bar_write32(peer, 0, EDU_IRQ_RAISE, 0x1));
	n = interrupts_within(peer_efd, 2000);
	ASSERT_LT(0, n) TH_LOG("a raise on the peer after the round trip: no INTx signal in 2 s");
	n = interrupts(efd);
	ASSERT_EQ(0, n) TH_LOG("%llu INTx signal(s) on the source for a raise on the peer", n);
	ASSERT_EQ(0, edu_intx_ack(peer));
	ksft_print_msg("%s -> %s: INTx signalled in RUNNING only, and by the destination\n",
		       device_bdf, peer_bdf);

	ASSERT_EQ(0, intx_set(peer->fd, VFIO_IRQ_SET_ACTION_TRIGGER, 0, -1));
	ASSERT_EQ(0, intx_set(fd, VFIO_IRQ_SET_ACTION_TRIGGER, 0, -1));
	close(peer_efd);
	close(efd);
	free(stream);
	vfio_pci_device_cleanup(peer);
	iommu_cleanup(peer_iommu);
}

/*
 * A data_fd read or write whose user buffer faults part way: the call returns
 * the bytes it moved before the fault, or fails with EFAULT having moved none,
 * so the stream stays consistent. Each buffer ends at an inaccessible page and
 * asks for more than it has: by turns 50 bytes (the first copy faults: EFAULT)
 * and about 96 KiB (a later copy faults: a short count). The stream read that
 * way, then written back that way, equals the stream saved normally, and is
 * accepted.
 */
TEST_F(migration, data_fd_io_that_faults_part_way_keeps_the_stream_whole)
{
	const size_t page = getpagesize(), room = 24 * 4096 + 100;
	int fd = self->device->fd, save_fd, load_fd, faults = 0, i;
	long long len, got = 0, put = 0, at;
	char *ref, *copy, *area, *fault, *b;
	size_t r, want;
	ssize_t n;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");
	perturb_state(self->device, 5);
	ref = save_stream(fd, &len);
	ASSERT_NE(NULL, ref);
	copy = malloc(len);
	ASSERT_NE(NULL, copy);
	/* Accessible pages, then one that faults. */
	area = mmap(NULL, room + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	fault = area + room + page - room % page;
	ASSERT_EQ(0, mprotect(fault, page, PROT_NONE));

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd));
	for (i = 0; got < len; i++) {
		r = i % 2 ? 50 : room;
		b = fault - r;
		n = read(save_fd, b, r + page);
		if (n < 0) {
			/* Nothing was consumed: the next read asks again. */
			ASSERT_EQ(EFAULT, errno) TH_LOG("at %lld of %lld", got, len);
			faults++;
			continue;
		}
		ASSERT_GT(n, 0) TH_LOG("at %lld of %lld", got, len);
		ASSERT_LE(n, r);
		ASSERT_LE(got + n, len);
		memcpy(copy + got, b, n);
		got += n;
	}
	ASSERT_EQ(0, read(save_fd, area, 16));
	close(save_fd);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_TRUE(same_stream(ref, len, copy, got, &at))
		TH_LOG("the stream read through faulting buffers differs at byte %lld", at);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	for (i = 0; put < len; i++) {
		r = i % 2 ? 50 : room;
		want = len - put;
		b = fault - r;
		memcpy(b, ref + put, want < r ? want : r);
		n = write(load_fd, b, want <= r ? want : r + page);
		if (n < 0) {
			ASSERT_EQ(EFAULT, errno) TH_LOG("at %lld of %lld", put, len);
			faults++;
			continue;
		}
		ASSERT_GT(n, 0) TH_LOG("at %lld of %lld", put, len);
		ASSERT_LE(n, r);
		put += n;
	}
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(load_fd);
	free(copy);
	copy = save_stream(fd, &got);
	ASSERT_NE(NULL, copy);
	ASSERT_TRUE(same_stream(ref, len, copy, got, &at)) TH_LOG("after the load: byte %lld", at);
	ksft_print_msg("%lld-byte stream read and written through faulting buffers, %d EFAULT(s)\n",
		       len, faults);
	/* A stream longer than a buffer met both kinds of fault. */
	if ((size_t)len > room)
		ASSERT_GT(faults, 0);
	munmap(area, room + 2 * page);
	free(copy);
	free(ref);
}

/*
 * A device closed while in STOP, or in ERROR, is RUNNING again when reopened:
 * its BARs answer, and it saves and restores a stream.
 */
TEST_F(migration, reopen_after_close_in_stop_or_error_is_running)
{
	static const __u32 left_in[] = { VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_ERROR };
	int fd, data_fd, bar, ret;
	long long len, again_len, at;
	char *stream, *again;
	__u64 offset;
	size_t i;
	char c;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");
	stream = save_stream(self->device->fd, &len);
	ASSERT_NE(NULL, stream);
	for (i = 0; i < ARRAY_SIZE(left_in); i++) {
		fd = self->device->fd;
		ret = reach(fd, left_in[i], stream, len, &data_fd);
		if (ret == -EOPNOTSUPP) {
			/* Left in RESUMING instead: closed there, it must run when reopened too. */
			ASSERT_EQ(VFIO_DEVICE_STATE_RESUMING, get_state(fd));
		} else {
			ASSERT_EQ(0, ret);
			ASSERT_EQ(left_in[i], get_state(fd));
		}
		if (data_fd >= 0)
			close(data_fd);
		vfio_pci_device_cleanup(self->device);
		self->device = vfio_pci_device_init(device_bdf, self->iommu);
		fd = self->device->fd;
		ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd))
			TH_LOG("reopened after a close in %s", state_name(left_in[i]));
		bar = largest_bar(self->device);
		ASSERT_GE(bar, 0);
		offset = self->device->bars[bar].info.offset;
		ASSERT_EQ(1, pread(fd, &c, 1, offset))
			TH_LOG("BAR%d after a close in %s", bar, state_name(left_in[i]));
		again = save_stream(fd, &again_len);
		ASSERT_NE(NULL, again);
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &data_fd));
		ASSERT_EQ(0, write_all(data_fd, stream, len));
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
		close(data_fd);
		free(again);
		again = save_stream(fd, &again_len);
		ASSERT_NE(NULL, again);
		ASSERT_TRUE(same_stream(stream, len, again, again_len, &at));
		free(again);
	}
	free(stream);
}

/* A writer blocked in a data_fd write, and a state request behind it. */
struct blocked_io {
	int fd, load_fd;
	void *page;
	size_t len;
	bool wrote, requested;
	ssize_t write_ret;
	int write_err, set_ret;
};

static void *blocked_writer(void *arg)
{
	struct blocked_io *b = arg;

	/* The copy from @page faults into the userfaultfd and waits there. */
	b->write_ret = write(b->load_fd, b->page, b->len);
	b->write_err = errno;
	WRITE_ONCE(b->wrote, true);
	return NULL;
}

static void *blocked_request(void *arg)
{
	struct blocked_io *b = arg;

	b->set_ret = set_state(b->fd, VFIO_DEVICE_STATE_STOP, NULL);
	WRITE_ONCE(b->requested, true);
	return NULL;
}

/*
 * The deferred reset, made to happen: a data_fd write whose user buffer
 * faults into a userfaultfd waits there holding the session's I/O lock; a
 * RESUMING -> STOP request then waits for that lock holding the state lock;
 * a VFIO_DEVICE_RESET meanwhile must not wait for either (its reset_done runs
 * under vfio_pci_core's memory_lock and may only try the state lock): it
 * returns while the request still waits. The write then goes on with the
 * start of a valid stream (a whole record at least): the reset ended its
 * session for the device, so the record must not reach the reset device
 * (ENODEV). The request's holder applies the reset as it unlocks, and the
 * device ends RUNNING with the session ended, though the request itself
 * failed (the stream was incomplete) into ERROR.
 */
TEST_F(migration, reset_during_a_blocked_request_is_deferred_and_applied)
{
	const size_t area = 20 * 4096;	/* a 64 KiB record and more */
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {};
	struct uffdio_copy copy = {};
	struct blocked_io b = { .fd = self->device->fd };
	struct uffd_msg msg;
	pthread_t writer, requester;
	long long len;
	struct pollfd p;
	char *stream, *src;
	int uffd;

	if (!env_is("VFIO_MIGRATION_TEST_STREAM", "rustmig"))
		SKIP(return, "rustmig's resume waits for the session's writer");
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	if (uffd < 0)
		SKIP(return, "no userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	stream = save_stream(b.fd, &len);
	ASSERT_NE(NULL, stream);
	b.len = (size_t)len < area ? (size_t)len : area;
	src = mmap(NULL, area, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, src);
	memcpy(src, stream, b.len);
	b.page = mmap(NULL, area, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, b.page);
	reg.range.start = (uintptr_t)b.page;
	reg.range.len = area;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));

	ASSERT_EQ(0, set_state(b.fd, VFIO_DEVICE_STATE_RESUMING, &b.load_fd));
	ASSERT_EQ(0, pthread_create(&writer, NULL, blocked_writer, &b));
	/* The writer is inside write(), at the fault. */
	p = (struct pollfd){ .fd = uffd, .events = POLLIN };
	ASSERT_EQ(1, poll(&p, 1, 10000)) TH_LOG("the write never faulted");
	ASSERT_EQ(sizeof(msg), read(uffd, &msg, sizeof(msg)));
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);
	ASSERT_EQ(0, pthread_create(&requester, NULL, blocked_request, &b));
	usleep(500 * 1000);
	ASSERT_FALSE(READ_ONCE(b.requested)) TH_LOG("RESUMING -> STOP did not wait for the writer");

	ASSERT_EQ(0, ioctl(b.fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_FALSE(READ_ONCE(b.requested)) TH_LOG("the reset waited for the state request");
	ASSERT_FALSE(READ_ONCE(b.wrote));

	/* Let the write go on, with the start of the saved stream. */
	copy.dst = (uintptr_t)b.page;
	copy.src = (uintptr_t)src;
	copy.len = area;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_COPY, &copy));
	ASSERT_EQ(0, pthread_join(writer, NULL));
	ASSERT_EQ(0, pthread_join(requester, NULL));
	ASSERT_EQ(-1, b.write_ret) TH_LOG("the write loaded %zd bytes into the reset device",
					  b.write_ret);
	ASSERT_EQ(ENODEV, b.write_err) TH_LOG("the write: %s", strerror(b.write_err));
	ASSERT_NE(0, b.set_ret) TH_LOG("an incomplete stream was accepted");
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(b.fd))
		TH_LOG("the reset that came during the request was lost");
	ASSERT_TRUE(session_ended(b.load_fd));
	close(b.load_fd);
	munmap(b.page, area);
	munmap(src, area);
	free(stream);
	close(uffd);
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
