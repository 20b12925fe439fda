#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the gate's proof modules: for each mk/inject/NAME.patch, the rustmig
# driver with that one deliberate bug, as an external module against the
# test kernel's build tree, in OUT_DIR/NAME/rustmig_vfio_pci.ko. The
# repository and the kernel tree are not touched.
#
# Usage: inject.sh SRC_DIR OBJ_DIR REPO_DIR OUT_DIR
set -euo pipefail
src=$1 obj=$2 repo=$3 out=$4
drv=$repo/drivers/vfio/pci/rustmig
# Debian's rustc, the one the tree was built with, before a rustup toolchain.
export PATH=/usr/bin:/usr/sbin:$PATH

for patch in "$repo"/mk/inject/*.patch; do
	name=$(basename "$patch" .patch)
	d=$out/$name
	rm -rf "$d"
	mkdir -p "$d"
	cp "$drv"/* "$d"/
	# The patches name a/drivers/vfio/pci/rustmig/FILE.
	patch -d "$d" -p5 --batch --forward -F0 --quiet < "$patch" ||
		{ echo "inject: $name.patch does not apply to $drv" >&2; exit 1; }
	echo "inject: building $name"
	make -C "$src" O="$obj" LLVM=1 M="$d" modules > "$d/build.log" 2>&1 ||
		{ echo "inject: $name does not build:" >&2; tail -n 40 "$d/build.log" >&2; exit 1; }
	[ -f "$d/rustmig_vfio_pci.ko" ] || { echo "inject: $name: no module built" >&2; exit 1; }
done
echo "inject: $(ls "$repo"/mk/inject/*.patch | wc -l) module(s) in $out"
