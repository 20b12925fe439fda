#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Run a kernel build, keeping its full log; on failure show the errors.
# Usage: kbuild.sh LOG MAKE-COMMAND...
log=$1
shift
if "$@" > "$log" 2>&1; then
	grep -c -E '^\s+(CC|CLIPPY|RUSTC|LD)' "$log" | sed 's/^/kbuild: /; s/$/ object(s) rebuilt/'
	exit 0
fi
echo "kbuild: the kernel build failed; errors from $log:" >&2
grep -E -B2 -A14 '^(error|.*: error:)' "$log" | head -n 150 >&2 || tail -n 60 "$log" >&2
exit 1
