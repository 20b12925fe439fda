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
# The boot sector of mk/qemu-migrate.py's guest that writes a device's memory.
as --32 -o "$obj/rustmig_bar_writer.o" "$src/tools/testing/selftests/vfio/rustmig_bar_writer.S"
ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$out/rustmig_bar_writer.bin" \
	"$obj/rustmig_bar_writer.o"
[ "$(stat -c %s "$out/rustmig_bar_writer.bin")" = 512 ] ||
	{ echo "selftests: rustmig_bar_writer.bin is not one 512-byte sector" >&2; exit 1; }
echo "selftests: built in $out"
