/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers of the VFIO migration v2 kselftests: device features, state
 * requests, data_fd reads and writes.
 */
#ifndef SELFTESTS_VFIO_MIGRATION_UTIL_H
#define SELFTESTS_VFIO_MIGRATION_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include <linux/vfio.h>

#include "kselftest.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

/*
 * Pin @thread to online CPU @n (modulo their count), so that the threads of
 * a race run at the same time when the machine's CPUs do. The CPUs are
 * counted from those online now, not from @thread's mask: a thread inherits
 * the mask of the thread that made it, which may already be pinned.
 * Returns the CPU, or -errno.
 */
static inline int pin_thread(pthread_t thread, unsigned int n)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t one;
	int cpu, ret;

	if (cpus < 1)
		return -EINVAL;
	cpu = n % cpus;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	ret = pthread_setaffinity_np(thread, sizeof(one), &one);
	return ret ? -ret : cpu;
}

/*
 * Issue VFIO_DEVICE_FEATURE with @size bytes of payload copied in and back
 * out. Returns 0 or -errno.
 */
static inline int device_feature(int fd, __u32 flags, void *data, size_t size)
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
static inline long expected_migration_flags(void)
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
static inline int set_state(int fd, __u32 state, int *data_fd)
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
static inline __u32 get_state(int fd)
{
	struct vfio_device_feature_mig_state st = {};

	if (device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
			   &st, sizeof(st)))
		return (__u32)-1;
	return st.device_state;
}

/* MIG_DATA_SIZE's stop_copy_length, or -errno. */
static inline long long data_size(int fd)
{
	struct vfio_device_feature_mig_data_size size = {};
	int ret;

	ret = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
			     &size, sizeof(size));
	return ret ? ret : (long long)size.stop_copy_length;
}

/* VFIO_MIG_GET_PRECOPY_INFO on a data_fd: 0 or -errno. */
static inline int precopy_info(int data_fd, struct vfio_precopy_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	return ioctl(data_fd, VFIO_MIG_GET_PRECOPY_INFO, info) ? -errno : 0;
}

/* Read @data_fd in @chunk-sized reads until it returns 0; the total, or -errno. */
static inline long long read_all(int data_fd, char *buf, size_t cap, size_t chunk)
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

/*
 * Read @data_fd until read() stops returning data; returns the last read()'s
 * result, with errno cleared before it, so that -1 and errno belong together.
 */
static inline ssize_t drain(int data_fd, char *buf, size_t size)
{
	ssize_t n;

	do {
		errno = 0;
		n = read(data_fd, buf, size);
	} while (n > 0);
	return n;
}

/* Whether the environment variable @name is set to @value. */
static inline bool env_is(const char *name, const char *value)
{
	const char *s = getenv(name);

	return s && !strcmp(s, value);
}

static inline const char *state_name(__u32 s)
{
	static const char * const names[] = {
		[VFIO_DEVICE_STATE_ERROR] = "ERROR",
		[VFIO_DEVICE_STATE_STOP] = "STOP",
		[VFIO_DEVICE_STATE_RUNNING] = "RUNNING",
		[VFIO_DEVICE_STATE_STOP_COPY] = "STOP_COPY",
		[VFIO_DEVICE_STATE_RESUMING] = "RESUMING",
		[VFIO_DEVICE_STATE_RUNNING_P2P] = "RUNNING_P2P",
		[VFIO_DEVICE_STATE_PRE_COPY] = "PRE_COPY",
		[VFIO_DEVICE_STATE_PRE_COPY_P2P] = "PRE_COPY_P2P",
	};

	return s < ARRAY_SIZE(names) ? names[s] : "?";
}

/*
 * Whether the session of @data_fd ended: poll() says POLLERR | POLLHUP. A
 * driver whose data_fd has no poll (VFIO_MIGRATION_TEST_POLL=0: mtty) is
 * asked by an empty read or write instead, which fails with ENODEV.
 */
static inline bool session_ended(int data_fd)
{
	struct pollfd p = { .fd = data_fd, .events = POLLIN | POLLOUT };
	char c;

	if (env_is("VFIO_MIGRATION_TEST_POLL", "0")) {
		if ((fcntl(data_fd, F_GETFL) & O_ACCMODE) == O_WRONLY)
			return write(data_fd, &c, 0) == -1 && errno == ENODEV;
		return read(data_fd, &c, 0) == -1 && errno == ENODEV;
	}
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

/* Write @len bytes of @buf to @data_fd in writes of 1, 2, ... 4099 bytes: 0 or -errno. */
static inline int write_all(int data_fd, const char *buf, size_t len)
{
	size_t off, n;
	ssize_t w;

	for (off = 0, n = 1; off < len; off += w, n = n % 4099 + 1) {
		w = write(data_fd, buf + off, n < len - off ? n : len - off);
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
	}
	return 0;
}

/* Save the device's whole stream into a new buffer; its length goes to @len. */
static inline char *save_stream(int fd, long long *len)
{
	long long size = data_size(fd);
	int save_fd;
	char *buf;

	if (size <= 0 || set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &save_fd))
		return NULL;
	buf = malloc(size + 1);
	if (buf)
		*len = read_all(save_fd, buf, size + 1, 1 << 20);
	close(save_fd);
	if (set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL) || !buf || *len != size) {
		free(buf);
		return NULL;
	}
	return buf;
}

#endif /* SELFTESTS_VFIO_MIGRATION_UTIL_H */
