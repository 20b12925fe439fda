// SPDX-License-Identifier: GPL-2.0-only
/*
 * A migratable vfio-pci device's life around its data_fds: resets in every
 * migration state, unbinding the driver and removing the PCI device while
 * data_fds are open and in use, unloading the driver's module meanwhile.
 *
 * Usage: vfio_pci_migration_lifecycle_test [harness options] SEGMENT:BUS:DEVICE.FUNCTION
 *
 * The device must support STOP_COPY, P2P and PRE_COPY. From the environment:
 *   VFIO_MIGRATION_TEST_DRIVER=NAME  the driver to bind the device back to
 *                                    (through driver_override) after it was
 *                                    unbound or removed; the unbind and
 *                                    remove cases skip without it;
 *   VFIO_MIGRATION_TEST_MODULE=NAME  the module of that driver, which must
 *                                    refuse to unload while a data_fd is open.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/compiler.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"
#include "migration_util.h"
#include "migration_device.h"

static const char *device_bdf;

/* Write @val to the sysfs file @path (relative to the device's directory if @dev). */
static int sysfs_write(bool dev, const char *path, const char *val)
{
	char p[256];
	int fd, ret = 0;

	snprintf(p, sizeof(p), dev ? "/sys/bus/pci/devices/%s/%s" : "%.0s/sys/bus/pci/%s",
		 device_bdf, path);
	fd = open(p, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Whether the device exists, and whether it is bound to driver @drv. */
static bool device_present(void)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s", device_bdf);
	return !stat(p, &st);
}

static bool device_bound_to(const char *drv)
{
	char p[256], link[256];
	ssize_t n;

	snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/driver", device_bdf);
	n = readlink(p, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = 0;
	return !strcmp(strrchr(link, '/') + 1, drv);
}

/* Rescan the bus until the device is back, then bind it to @drv: 0 or -errno. */
static int rescan_and_bind(const char *drv)
{
	int i, ret;

	for (i = 0; i < 50 && !device_present(); i++) {
		ret = sysfs_write(false, "rescan", "1");
		if (ret)
			return ret;
		usleep(100000);
	}
	if (!device_present())
		return -ENODEV;
	ret = sysfs_write(true, "driver_override", drv);
	if (ret)
		return ret;
	ret = sysfs_write(false, "drivers_probe", device_bdf);
	if (ret)
		return ret;
	return device_bound_to(drv) ? 0 : -ENXIO;
}

static void ms_sleep(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * A thread doing reads or writes on a data_fd until they fail. A reader
 * reads on after the end of the stream (read() returns 0); a writer writes
 * @len bytes of a valid stream slowly, then goes on with empty writes, so
 * that only the end of the session stops either.
 */
struct data_io {
	pthread_t thread;
	int data_fd;
	bool write;
	const char *buf;	/* what to write */
	size_t len;
	long ops;		/* calls that succeeded */
	int err;		/* the errno that ended the loop */
	bool done;
};

static void *data_io_fn(void *arg)
{
	struct data_io *io = arg;
	static char sink[4096];
	size_t off = 0, n;
	ssize_t ret;

	for (;;) {
		if (io->write) {
			n = io->len - off < 64 ? io->len - off : 64;
			ret = write(io->data_fd, io->buf + off, n);
			if (ret > 0)
				off += ret;
			usleep(500);
		} else {
			ret = read(io->data_fd, sink, sizeof(sink));
		}
		if (ret < 0) {
			io->err = errno;
			break;
		}
		WRITE_ONCE(io->ops, io->ops + 1);
	}
	WRITE_ONCE(io->done, true);
	return NULL;
}

/* Start the data_fd I/O of @io, and make sure it runs. */
static void data_io_start(struct data_io *io)
{
	VFIO_ASSERT_EQ(0, pthread_create(&io->thread, NULL, data_io_fn, io));
	/* The I/O on one CPU, the resets, unbinds and removes on the other. */
	VFIO_ASSERT_LE(0, pin_thread(pthread_self(), 0));
	VFIO_ASSERT_LE(0, pin_thread(io->thread, 1));
	while (!READ_ONCE(io->ops) && !READ_ONCE(io->done))
		ms_sleep(1);
}

/* Wait up to @ms for the data_fd I/O to end; whether it did. */
static bool data_io_wait(struct data_io *io, long ms)
{
	for (; ms > 0 && !READ_ONCE(io->done); ms -= 10)
		ms_sleep(10);
	if (!READ_ONCE(io->done))
		return false;
	pthread_join(io->thread, NULL);
	return true;
}

/* A thread writing a sysfs file of the device, which may block. */
struct sysfs_op {
	pthread_t thread;
	const char *file;
	const char *val;
	int ret;
	bool done;
};

static void *sysfs_op_fn(void *arg)
{
	struct sysfs_op *op = arg;

	op->ret = sysfs_write(true, op->file, op->val);
	WRITE_ONCE(op->done, true);
	return NULL;
}

/*
 * Write @op's file, which must block while the device fd is open, then close
 * the device (@device, @iommu): the write completes. 0, or what went wrong.
 */
static const char *sysfs_op_across_close(struct sysfs_op *op, struct vfio_pci_device *device,
					 struct iommu *iommu)
{
	int ms;

	if (pthread_create(&op->thread, NULL, sysfs_op_fn, op))
		return "pthread_create failed";
	if (pin_thread(op->thread, 0) < 0)
		return "pinning the sysfs writer failed";
	ms_sleep(300);
	if (READ_ONCE(op->done))
		return "the sysfs write did not wait for the device fd";
	vfio_pci_device_cleanup(device);
	iommu_cleanup(iommu);
	for (ms = 0; ms < 10000 && !READ_ONCE(op->done); ms += 10)
		ms_sleep(10);
	if (!READ_ONCE(op->done))
		return "the sysfs write still blocks 10 s after the device fd closed";
	pthread_join(op->thread, NULL);
	return op->ret ? strerror(-op->ret) : NULL;
}

/* Try to unload @module without waiting: 0 or -errno. */
static int try_rmmod(const char *module)
{
	return syscall(__NR_delete_module, module, O_NONBLOCK) ? -errno : 0;
}

/* After the device was opened again: a whole stream saves and loads back. */
static void round_trip_still_works(struct __test_metadata *_metadata)
{
	struct iommu *iommu = iommu_init(MODE_IOMMUFD);
	struct vfio_pci_device *device = vfio_pci_device_init(device_bdf, iommu);
	long long len;
	char *stream;
	int load_fd;

	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(device->fd));
	stream = save_stream(device->fd, &len);
	ASSERT_NE(NULL, stream);
	ASSERT_EQ(0, set_state(device->fd, VFIO_DEVICE_STATE_RESUMING, &load_fd));
	ASSERT_EQ(0, write_all(load_fd, stream, len));
	ASSERT_EQ(0, set_state(device->fd, VFIO_DEVICE_STATE_RUNNING, NULL));
	close(load_fd);
	free(stream);
	vfio_pci_device_cleanup(device);
	iommu_cleanup(iommu);
}

/*
 * Reach @state from RUNNING, with a session half done in STOP_COPY (half the
 * stream read) and RESUMING (half of a valid stream written). Returns the
 * session's data_fd, or -1 for a state without one.
 */
static int reach(struct __test_metadata *_metadata, int fd, __u32 state,
		 const char *stream, long long len)
{
	static char half[8 << 20];
	int data_fd = -1;

	switch (state) {
	case VFIO_DEVICE_STATE_ERROR:
		/* A header that is refused, then RESUMING -> STOP fails into ERROR. */
		memset(half, 0, 4096);
		EXPECT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &data_fd));
		EXPECT_EQ(-1, write(data_fd, half, 4096));
		EXPECT_NE(0, set_state(fd, VFIO_DEVICE_STATE_STOP, NULL));
		break;
	case VFIO_DEVICE_STATE_STOP_COPY:
		EXPECT_EQ(0, set_state(fd, state, &data_fd));
		EXPECT_EQ(len / 2, read_all(data_fd, half, len / 2, 4096));
		break;
	case VFIO_DEVICE_STATE_RESUMING:
		EXPECT_EQ(0, set_state(fd, state, &data_fd));
		EXPECT_EQ(0, write_all(data_fd, stream, len / 2));
		break;
	default:
		EXPECT_EQ(0, set_state(fd, state, &data_fd));
	}
	EXPECT_EQ(state, get_state(fd));
	return data_fd;
}

/*
 * Give @device a state of @seed that differs from the one it has: edu's
 * registers or the state BAR (perturb_state()), else the largest mmapped BAR
 * (ivshmem's memory). 0, -ENOENT if there is no such state, or -errno.
 */
static int perturb(struct vfio_pci_device *device, __u32 seed)
{
	int ret = perturb_state(device, seed), bar = -1, i;

	if (ret != -ENOENT || !hardware_state())
		return ret;
	for (i = 0; i < PCI_STD_NUM_BARS; i++)
		if (device->bars[i].vaddr &&
		    (bar < 0 || device->bars[i].info.size > device->bars[bar].info.size))
			bar = i;
	if (bar < 0)
		return -ENOENT;
	memset(device->bars[bar].vaddr, 0x5a ^ seed, device->bars[bar].info.size);
	return 0;
}

/*
 * VFIO_DEVICE_RESET in each state, sessions half done included: the device
 * is RUNNING afterwards, the old session is over (its data_fd reads and writes
 * fail with ENODEV, poll reports it), and a new round trip works: the device,
 * given another state after the reset, then holds the stream it loaded (saved
 * again, it gives the same bytes).
 */
TEST(reset_in_every_state_ends_the_session)
{
	static const __u32 states[] = {
		VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING_P2P,
		VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_PRE_COPY,
		VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_STOP_COPY,
		VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_ERROR,
	};
	struct iommu *iommu = iommu_init(MODE_IOMMUFD);
	struct vfio_pci_device *device = vfio_pci_device_init(device_bdf, iommu);
	int fd = device->fd, data_fd, ret;
	long long len, again_len, at;
	char *stream, *again, c;
	bool known;
	size_t i;

	stream = save_stream(fd, &len);
	ASSERT_NE(NULL, stream);
	/* A state of another seed must show in the stream, or the checks below see nothing. */
	ret = perturb(device, 0xf0);
	ASSERT_TRUE(!ret || ret == -ENOENT) TH_LOG("perturbing the state: %s", strerror(-ret));
	known = !ret;
	if (known) {
		again = save_stream(fd, &again_len);
		ASSERT_NE(NULL, again);
		ASSERT_FALSE(same_stream(stream, len, again, again_len, &at))
			TH_LOG("another state saves the same stream: it is not the device's");
		free(again);
	}
	for (i = 0; i < ARRAY_SIZE(states); i++) {
		TH_LOG("reset in %s", state_name(states[i]));
		data_fd = reach(_metadata, fd, states[i], stream, len);
		ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_RESET, NULL));
		ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, get_state(fd));
		if (data_fd >= 0) {
			ASSERT_TRUE(session_ended(data_fd));
			if (states[i] == VFIO_DEVICE_STATE_RESUMING ||
			    states[i] == VFIO_DEVICE_STATE_ERROR) {
				ASSERT_EQ(-1, write(data_fd, stream, 1));
			} else {
				ASSERT_EQ(-1, read(data_fd, &c, 1));
			}
			ASSERT_EQ(ENODEV, errno);
			close(data_fd);
		}
		/* The next session starts from scratch, on a device in another state. */
		if (known)
			ASSERT_EQ(0, perturb(device, 0xf1 + i));
		data_fd = -1;
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RESUMING, &data_fd));
		ASSERT_EQ(0, write_all(data_fd, stream, len));
		ASSERT_EQ(0, set_state(fd, VFIO_DEVICE_STATE_RUNNING, NULL));
		close(data_fd);
		again = save_stream(fd, &again_len);
		ASSERT_NE(NULL, again);
		ASSERT_TRUE(same_stream(stream, len, again, again_len, &at))
			TH_LOG("reset in %s, reloaded, saved: differs at byte %lld (%lld, %lld)",
			       state_name(states[i]), at, len, again_len);
		free(again);
	}
	ksft_print_msg("reset in %zu states, each followed by a %lld-byte round trip%s\n",
		       ARRAY_SIZE(states), len,
		       known ? " into another state, whose saved stream is the one loaded" : "");
	free(stream);
	vfio_pci_device_cleanup(device);
	iommu_cleanup(iommu);
}

/*
 * Unbind the driver while the device fd is open and a thread reads a saving
 * data_fd: the unbind waits for the device fd, the close ends the session
 * (the reader gets ENODEV), and the data_fd stays safe to use and close after
 * the driver let go of the device, and after the PCI device was removed. The
 * module cannot be unloaded while the data_fd is open.
 */
TEST(unbind_and_remove_with_a_data_fd_reading)
{
	const char *drv = getenv("VFIO_MIGRATION_TEST_DRIVER");
	const char *module = getenv("VFIO_MIGRATION_TEST_MODULE");
	struct iommu *iommu;
	struct vfio_pci_device *device;
	struct sysfs_op unbind = { .file = "driver/unbind", .val = device_bdf };
	struct data_io io = {};
	struct vfio_precopy_info info;
	const char *err;
	char c;

	if (!drv)
		SKIP(return, "VFIO_MIGRATION_TEST_DRIVER not set");
	iommu = iommu_init(MODE_IOMMUFD);
	device = vfio_pci_device_init(device_bdf, iommu);
	ASSERT_EQ(0, set_state(device->fd, VFIO_DEVICE_STATE_PRE_COPY, &io.data_fd));
	ASSERT_EQ(0, set_state(device->fd, VFIO_DEVICE_STATE_STOP_COPY, NULL));
	data_io_start(&io);

	/* vfio waits for the user to close the device. */
	err = sysfs_op_across_close(&unbind, device, iommu);
	ASSERT_EQ(NULL, err) TH_LOG("unbind: %s", err);
	ASSERT_TRUE(data_io_wait(&io, 5000));
	ASSERT_EQ(ENODEV, io.err);
	ASSERT_GT(io.ops, 0);

	/* Unbound: the data_fd is still open, its session over. */
	ASSERT_EQ(-1, read(io.data_fd, &c, 1));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_TRUE(session_ended(io.data_fd));
	ASSERT_NE(0, precopy_info(io.data_fd, &info));
	if (module)
		ASSERT_EQ(-EWOULDBLOCK, try_rmmod(module))
			TH_LOG("%s unloads with a data_fd open", module);

	/* Removed: the same, with the PCI device gone. */
	ASSERT_EQ(0, sysfs_write(true, "remove", "1"));
	ASSERT_FALSE(device_present());
	ASSERT_EQ(-1, read(io.data_fd, &c, 1));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_TRUE(session_ended(io.data_fd));
	if (module)
		ASSERT_EQ(-EWOULDBLOCK, try_rmmod(module));
	ASSERT_EQ(0, close(io.data_fd));

	ASSERT_EQ(0, rescan_and_bind(drv));
	round_trip_still_works(_metadata);
	ksft_print_msg("%ld reads before the session ended; unbind waited for the device fd\n",
		       io.ops);
}

/*
 * Remove the PCI device (no unbind first) while a thread writes a resuming
 * data_fd: the same, from the resuming side. The device's memory is not
 * touched once its session ended.
 */
TEST(remove_with_a_data_fd_writing)
{
	const char *drv = getenv("VFIO_MIGRATION_TEST_DRIVER");
	struct iommu *iommu;
	struct vfio_pci_device *device;
	struct sysfs_op remove = { .file = "remove", .val = "1" };
	struct data_io io = { .write = true };
	const char *err;
	long long len;
	char *stream;

	if (!drv)
		SKIP(return, "VFIO_MIGRATION_TEST_DRIVER not set");
	iommu = iommu_init(MODE_IOMMUFD);
	device = vfio_pci_device_init(device_bdf, iommu);
	stream = save_stream(device->fd, &len);
	ASSERT_NE(NULL, stream);
	/* Never the whole stream: the session must stay open until the device goes. */
	io.buf = stream;
	io.len = len - 1;
	ASSERT_EQ(0, set_state(device->fd, VFIO_DEVICE_STATE_RESUMING, &io.data_fd));
	data_io_start(&io);

	/* "remove" unbinds first, and so waits for the device fd too. */
	err = sysfs_op_across_close(&remove, device, iommu);
	ASSERT_EQ(NULL, err) TH_LOG("remove: %s", err);
	ASSERT_FALSE(device_present());
	ASSERT_TRUE(data_io_wait(&io, 5000));
	ASSERT_EQ(ENODEV, io.err) TH_LOG("the writer ended with %s", strerror(io.err));
	ASSERT_EQ(-1, write(io.data_fd, stream, 1));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_TRUE(session_ended(io.data_fd));
	ASSERT_EQ(0, close(io.data_fd));
	free(stream);

	ASSERT_EQ(0, rescan_and_bind(drv));
	round_trip_still_works(_metadata);
	ksft_print_msg("%ld writes before the session ended\n", io.ops);
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
