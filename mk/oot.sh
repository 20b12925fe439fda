#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The driver built out of tree, from the repository's top-level Kbuild, as a
# user of a 7.3 tree with the kernel crate's vfio abstractions would build it:
# make -C SRC O=OBJ M=REPO MO=OUT modules. The module must come out named
# rustmig_vfio_pci, for the tree's kernel, and nothing may be written into
# the repository.
#
# Usage: oot.sh SRC_DIR OBJ_DIR REPO_DIR OUT_DIR
set -euo pipefail
src=$1 obj=$2 repo=$3 out=$4
export PATH=/usr/bin:/usr/sbin:$PATH
die() { echo "oot: error: $*" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
before=$(git -C "$repo" status --porcelain --ignored 2>/dev/null || true)
if ! make -C "$src" O="$obj" LLVM=1 M="$repo" MO="$out" modules > "$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	die "the out-of-tree build failed (log above)"
fi
ko=$out/drivers/vfio/pci/rustmig/rustmig_vfio_pci.ko
[ -s "$ko" ] || die "$ko was not built; the build said: $(tail -n 5 "$out/build.log")"
name=$(modinfo -F name "$ko")
[ "$name" = rustmig_vfio_pci ] || die "the module is named '$name'"
want=$(modinfo -F vermagic "$obj/drivers/vfio/pci/rustmig/rustmig_vfio_pci.ko")
got=$(modinfo -F vermagic "$ko")
[ "$got" = "$want" ] || die "vermagic '$got', the tree's is '$want'"
after=$(git -C "$repo" status --porcelain --ignored 2>/dev/null || true)
[ "$before" = "$after" ] || die "the build wrote into the repository: $(diff <(echo "$before") <(echo "$after") | tail -n 5)"
echo "oot: $ko built out of tree ($(stat -c %s "$ko") bytes, vermagic $got)"
