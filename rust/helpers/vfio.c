// SPDX-License-Identifier: GPL-2.0

#include <linux/mm.h>
#include <linux/vfio.h>

#if IS_ENABLED(CONFIG_RUST_VFIO_PCI_CORE_ABSTRACTIONS)

__rust_helper void rust_helper_vfio_put_device(struct vfio_device *device)
{
	vfio_put_device(device);
}

/*
 * The protection of a page of a shared writable BAR mmap mapped writable at
 * once: the VMA's (read-only when it asks for write notifications), with the
 * permissions of its flags and its caching attributes kept.
 */
__rust_helper pgprot_t
rust_helper_vfio_pci_bar_writable_prot(struct vm_area_struct *vma)
{
	return pgprot_modify(vma->vm_page_prot, vm_get_page_prot(vma->vm_flags));
}

#endif
