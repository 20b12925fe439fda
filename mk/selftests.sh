#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the vfio kselftests (upstream ones and the project's) against the
# uAPI headers exported from the kernel build.
#
# Usage: selftests.sh SRC_DIR OBJ_DIR OUT_DIR
set -euo pipefail
src=$1 obj=$2 out=$3
export PATH=/usr/bin:$PATH

make -s -C "$src" O="$obj" LLVM=1 headers
mkdir -p "$out"
make -s -C "$src/tools/testing/selftests/vfio" OUTPUT="$out" \
	KHDR_INCLUDES="-isystem $obj/usr/include" -j"$(nproc)"
for t in vfio_pci_migration_test vfio_pci_migration_stream_test vfio_pci_migration_lifecycle_test vfio_iommufd_setup_test vfio_pci_device_test \
	vfio_dma_mapping_test; do
	[ -x "$out/$t" ] || { echo "selftests: $t was not built" >&2; exit 1; }
done
echo "selftests: built in $out"
