#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Style gates for the project's Rust code (rust/kernel/vfio*, drivers/vfio/pci/rustmig,
# samples/rust/rust_vfio*):
#  - `make LLVM=1 rustfmtcheck` over the tree, which includes the project's files;
#  - no rustc or clippy warning. The kernel is always built with CLIPPY=1; when the project's
#    Rust files changed since their last clean lint, their tree copies are touched and rebuilt
#    so that every warning they have shows up in this log.
#
# Usage: rustcheck.sh SRC_DIR OBJ_DIR REPO_DIR KERNEL-MAKE-COMMAND...
set -euo pipefail
src=$1 obj=$2 repo=$3
shift 3
export PATH=/usr/bin:$PATH

if ! make -s -C "$src" O="$obj" LLVM=1 rustfmtcheck > "$obj/rustfmt.log" 2>&1; then
	echo "rustcheck: rustfmt wants changes ('make rustfmt' applies them):" >&2
	cat "$obj/rustfmt.log" >&2
	exit 1
fi
echo "rustcheck: rustfmt clean"

cd "$repo"
files=$(find rust/kernel/vfio.rs rust/kernel/vfio drivers/vfio/pci/rustmig samples/rust -name '*.rs' | sort)
hash=$(cat $files | sha256sum | cut -d' ' -f1)
if [ "$(cat "$obj/.rustcheck-clean" 2>/dev/null)" = "$hash" ]; then
	echo "rustcheck: no rustc/clippy warning (project Rust files unchanged since their last lint)"
	exit 0
fi
for f in $files; do touch "$src/$f"; done
if ! "$@" all > "$obj/build-lint.log" 2>&1; then
	echo "rustcheck: the lint build failed:" >&2
	grep -E -B2 -A14 '^error' "$obj/build-lint.log" | head -n 150 >&2
	exit 1
fi
if grep -A14 -E '^(warning|error)' "$obj/build-lint.log" |
	grep -q -E -- '--> .*(rust/kernel/vfio|drivers/vfio/pci/rustmig|samples/rust/rust_vfio)'; then
	echo "rustcheck: rustc/clippy warnings in the project's Rust code:" >&2
	awk '/^(warning|error)/ {blk=$0; keep=0; next} {blk=blk "\n" $0} /--> .*(rust\/kernel\/vfio|drivers\/vfio\/pci\/rustmig|samples\/rust\/rust_vfio)/ {keep=1} /^$/ {if (keep) print blk; keep=0}' \
		"$obj/build-lint.log" >&2
	exit 1
fi
echo "$hash" > "$obj/.rustcheck-clean"
echo "rustcheck: no rustc/clippy warning in the project's Rust code ($(echo $files | wc -w) files linted)"
