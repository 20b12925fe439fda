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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Config space reads through the device match the ids sysfs shows. */
TEST_F(migration, config_space_ids_match_sysfs)
{
	unsigned int vendor, device;
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", device_bdf);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%x", &vendor));
	fclose(f);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", device_bdf);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%x", &device));
	fclose(f);

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

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
