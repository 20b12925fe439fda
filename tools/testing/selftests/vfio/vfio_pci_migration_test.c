// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VFIO migration v2 uAPI of a vfio-pci (variant) device.
 *
 * Usage: vfio_pci_migration_test [harness options] SEGMENT:BUS:DEVICE.FUNCTION
 *
 * The device is opened through its vfio cdev and an iommufd. The expected
 * migration capabilities of the bound driver come from the environment:
 * VFIO_MIGRATION_TEST_FLAGS, the VFIO_MIGRATION_* flags the device must
 * advertise ("none" when it must not support migration at all).
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"

static const char *device_bdf;

/*
 * Issue VFIO_DEVICE_FEATURE with @size bytes of payload copied in and back
 * out. Returns 0 or -errno.
 */
static int device_feature(int fd, __u32 flags, void *data, size_t size)
{
	__u64 buf[(sizeof(struct vfio_device_feature) + 64) / sizeof(__u64)] = {};
	struct vfio_device_feature *feature = (void *)buf;

	if (size > 64)
		return -E2BIG;
	feature->argsz = sizeof(*feature) + size;
	feature->flags = flags;
	if (size)
		memcpy(feature->data, data, size);
	if (ioctl(fd, VFIO_DEVICE_FEATURE, feature))
		return -errno;
	if (size)
		memcpy(data, feature->data, size);
	return 0;
}

/*
 * The migration flags the device is expected to advertise, from
 * VFIO_MIGRATION_TEST_FLAGS: "none", or a number. -1 if unset.
 */
static long expected_migration_flags(void)
{
	const char *s = getenv("VFIO_MIGRATION_TEST_FLAGS");
	char *end;
	long v;

	if (!s)
		return -1;
	if (!strcmp(s, "none"))
		return 0;
	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || *end || v < 0) {
		fprintf(stderr, "bad VFIO_MIGRATION_TEST_FLAGS '%s'\n", s);
		exit(KSFT_FAIL);
	}
	return v;
}


/* Request @state; the data_fd the device returned (or -1) goes to @data_fd. */
static int set_state(int fd, __u32 state, int *data_fd)
{
	struct vfio_device_feature_mig_state st = { .device_state = state, .data_fd = -1 };
	int ret;

	ret = device_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
			     &st, sizeof(st));
	if (data_fd)
		*data_fd = ret ? -1 : st.data_fd;
	return ret;
}

/* The current state, or (__u32)-1 if it cannot be read. */
static __u32 get_state(int fd)
{
	struct vfio_device_feature_mig_state st = {};

	if (device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
			   &st, sizeof(st)))
		return (__u32)-1;
	return st.device_state;
}

/* MIG_DATA_SIZE's stop_copy_length, or -errno. */
static long long data_size(int fd)
{
	struct vfio_device_feature_mig_data_size size = {};
	int ret;

	ret = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
			     &size, sizeof(size));
	return ret ? ret : (long long)size.stop_copy_length;
}

/* VFIO_MIG_GET_PRECOPY_INFO on a data_fd: 0 or -errno. */
static int precopy_info(int data_fd, struct vfio_precopy_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	return ioctl(data_fd, VFIO_MIG_GET_PRECOPY_INFO, info) ? -errno : 0;
}

/* Read @data_fd in @chunk-sized reads until it returns 0; the total, or -errno. */
static long long read_all(int data_fd, char *buf, size_t cap, size_t chunk)
{
	size_t total = 0;
	ssize_t n;

	for (;;) {
		n = read(data_fd, buf + total, total + chunk <= cap ? chunk : cap - total);
		if (n < 0)
			return -errno;
		if (n == 0)
			return total;
		total += n;
		if (total == cap)
			return total;
	}
}

#define STREAM_CAP (16 << 20)

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
	long vendor = sysfs_hex("vendor"), device = sysfs_hex("device");

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

	ret_state = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
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
 * ERROR, which no request can leave (nor name) and VFIO_DEVICE_RESET does.
 */
TEST_F(migration, incomplete_resume_fails_into_error_until_reset)
{
	int fd = self->device->fd, load_fd;
	char byte = 0;

	if (self->want_flags <= 0)
		SKIP(return, "no migration expected");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_GE(load_fd, 0);
	ASSERT_EQ(1, write(load_fd, &byte, 1));
	ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(fd));
	ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	ASSERT_EQ(-EINVAL, set_state(fd, VFIO_DEVICE_STATE_ERROR, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_ERROR, get_state(fd));
	close(load_fd);

	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
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
	char buf[4096];
	__u64 initial;

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
	while (read(save_fd, buf, sizeof(buf)) > 0)
		;
	ASSERT_EQ(ENOMSG, errno);
	ASSERT_EQ(0, precopy_info(save_fd, &info));
	ASSERT_EQ(0, info.initial_bytes);
	ASSERT_EQ(0, info.dirty_bytes);

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &none_fd));
	ASSERT_EQ(-1, none_fd);
	ASSERT_EQ(-EINVAL, precopy_info(save_fd, &info));
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

	if (self->want_flags <= 0 || !(self->want_flags & VFIO_MIGRATION_PRE_COPY))
		SKIP(return, "no PRE_COPY expected");

	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &save_fd));
	ASSERT_GE(save_fd, 0);
	ASSERT_EQ(POLLIN, poll_one(save_fd, POLLIN, 0) & POLLIN);
	while (read(save_fd, buf, sizeof(buf)) > 0)
		;
	ASSERT_EQ(ENOMSG, errno);
	ASSERT_EQ(0, poll_one(save_fd, POLLIN, 0));

	p.fd = save_fd;
	ASSERT_EQ(0, pthread_create(&thread, NULL, poller_thread, &p));
	usleep(300 * 1000);
	ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, NULL));
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(POLLIN, p.revents & POLLIN);
	ASSERT_LT(p.seconds, 10.0);
	ASSERT_EQ(0, read(save_fd, buf, sizeof(buf)));

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
	/* Offset 4: edu's liveness register, ivshmem's interrupt status. */
	ASSERT_EQ(4, read(save_fd, bar0 + 4, 4));
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

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
