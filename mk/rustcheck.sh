#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Style gates for every Rust file of the project in the kernel tree (rust/, drivers/,
# samples/):
#  - `make LLVM=1 rustfmtcheck` over the tree, which includes the project's files;
#  - no rustc or clippy warning, and no objtool warning on their code. The kernel is always
#    built with CLIPPY=1; when the project's Rust files changed since their last clean lint,
#    their tree copies are touched and rebuilt so that every warning they have shows up in
#    this log.
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
files=$(find rust drivers samples -name '*.rs' | sort)
# A warning is the project's when it points into one of its files.
paths=$(echo $files | tr ' ' '\n' | sed 's/\./\\./g' | paste -sd'|')
# objtool names functions: the project's are in its modules, or in the kernel crate's modules
# of the project's files (Rust's mangled names spell each path element's length and name).
mangled=$(echo $files | tr ' ' '\n' | sed -n 's|^rust/kernel/\([a-z_]*\)\(/.*\)\?\.rs$|\1|p' | sort -u |
	while read -r m; do printf '%s%s\n' "${#m}" "$m"; done | paste -sd'|')
hash=$(cat $files | sha256sum | cut -d' ' -f1)
if [ "$(cat "$obj/.rustcheck-clean" 2>/dev/null)" = "$hash" ]; then
	echo "rustcheck: no rustc, clippy or objtool warning (project Rust files unchanged since their last lint)"
	exit 0
fi
for f in $files; do touch "$src/$f"; done
if ! "$@" all > "$obj/build-lint.log" 2>&1; then
	echo "rustcheck: the lint build failed:" >&2
	grep -E -B2 -A14 '^error' "$obj/build-lint.log" | head -n 150 >&2
	exit 1
fi
if grep -A14 -E '^(warning|error)' "$obj/build-lint.log" | grep -q -E -- "--> .*($paths)"; then
	echo "rustcheck: rustc/clippy warnings in the project's Rust code:" >&2
	re="--> .*($paths)" awk '/^(warning|error)/ {blk=$0; keep=0; next} {blk=blk "\n" $0}
		$0 ~ ENVIRON["re"] {keep=1} /^$/ {if (keep) print blk; keep=0}' "$obj/build-lint.log" >&2
	exit 1
fi
objtool=$(grep -E 'objtool: ' "$obj/build-lint.log" |
	grep -E "rustmig|rust_vfio|_RN[A-Za-z0-9_]*6kernel($mangled)" || true)
if [ -n "$objtool" ]; then
	echo "rustcheck: objtool warnings on the project's Rust code:" >&2
	echo "$objtool" >&2
	exit 1
fi
echo "$hash" > "$obj/.rustcheck-clean"
echo "rustcheck: no rustc, clippy or objtool warning in the project's Rust code ($(echo $files | wc -w) files linted)"
