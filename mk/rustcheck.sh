#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Style gates for the project's Rust code:
#  - `make LLVM=1 rustfmtcheck` over the tree (which includes the project's files);
#  - clippy: the kernel is built with CLIPPY=1 (see the Makefile), and this fails on any
#    warning the build log shows for the project's Rust files.
#
# Usage: rustcheck.sh SRC_DIR OBJ_DIR REPO_DIR
set -euo pipefail
src=$1 obj=$2 repo=$3
export PATH=/usr/bin:$PATH

if ! make -s -C "$src" O="$obj" LLVM=1 rustfmtcheck > "$obj/rustfmt.log" 2>&1; then
	echo "rustcheck: rustfmt wants changes:" >&2
	cat "$obj/rustfmt.log" >&2
	exit 1
fi
echo "rustcheck: rustfmt clean"

# Warnings of the project's Rust files, from every kernel build log kept.
paths='(rust/kernel/vfio|drivers/vfio/pci/rustmig)'
if grep -h -A12 -E "^(warning|error)" "$obj"/build*.log 2>/dev/null |
	grep -B1 -A10 -E -- "--> .*$paths" > "$obj/clippy.log"; then
	echo "rustcheck: rustc/clippy warnings in the project's Rust code:" >&2
	cat "$obj/clippy.log" >&2
	exit 1
fi
echo "rustcheck: no rustc/clippy warning in the project's Rust code"
