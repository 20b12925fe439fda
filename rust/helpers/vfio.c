// SPDX-License-Identifier: GPL-2.0

#include <linux/vfio.h>

#if IS_ENABLED(CONFIG_RUST_VFIO_PCI_CORE_ABSTRACTIONS)

__rust_helper void rust_helper_vfio_put_device(struct vfio_device *device)
{
	vfio_put_device(device);
}

#endif
