#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Prepare the kernel source tree: Debian's pristine linux-source-7.3, the
# patch series in patches/ (edits to existing upstream files), then the
# repository's new files laid over it at their kernel paths.
#
# Incremental: the tree is unpacked again only when the tarball or the patch
# series changed; overlaid files are copied only when their content differs,
# so kbuild rebuilds only what changed.
#
# Usage: tree.sh REPO_DIR SRC_DIR
set -euo pipefail

repo=$(cd "$1" && pwd)
src=$2
tarball=${RUSTMIG_TARBALL:-/usr/src/linux-source-7.3.tar.xz}
state=$src.state
# Top-level directories of the repository that mirror kernel paths.
kdirs=(Documentation drivers include kernel rust samples tools)

die() { echo "tree: error: $*" >&2; exit 1; }

[ -f "$tarball" ] || die "$tarball not found (run 'make deps')"

series=$repo/patches/series
patches=()
if [ -f "$series" ]; then
	while read -r p; do
		case "$p" in ''|'#'*) continue ;; esac
		[ -f "$repo/patches/$p" ] || die "patches/series names missing patch $p"
		patches+=("$p")
	done < "$series"
fi

want=$( { stat -c '%n %s %Y' "$tarball"; for p in "${patches[@]}"; do
	echo "$p $(sha256sum < "$repo/patches/$p")"; done; } | sha256sum | cut -d' ' -f1)
have=$(cat "$state/stamp" 2>/dev/null || true)

if [ "$want" != "$have" ] || [ ! -f "$src/Makefile" ]; then
	echo "tree: unpacking $(basename "$tarball") and applying ${#patches[@]} patch(es)"
	mkdir -p "$state"
	# Files the previous series touched must look new to kbuild after the
	# unpack, or outputs built from the patched text would be kept.
	touched_before=$(cat "$state/touched" 2>/dev/null || true)
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	( cd "$src.tmp" && find . -type f -o -type l | sed 's|^\./||' | sort ) > "$state/pristine"
	: > "$state/touched.new"
	for p in "${patches[@]}"; do
		patch -d "$src.tmp" -p1 --batch --forward --quiet < "$repo/patches/$p" ||
			die "patch $p does not apply to $(basename "$tarball")"
		sed -n 's|^+++ b/||p' "$repo/patches/$p" | cut -f1 >> "$state/touched.new"
	done
	for f in $touched_before $(cat "$state/touched.new"); do
		[ -e "$src.tmp/$f" ] && touch "$src.tmp/$f"
	done
	mv "$state/touched.new" "$state/touched"
	mv "$src.tmp" "$src"
	rm -f "$state/overlay"
	echo "$want" > "$state/stamp"
fi

# Overlay the repository's new files.
cd "$repo"
list=$(find "${kdirs[@]}" -type f 2>/dev/null | sort || true)
bad=$(comm -12 <(echo "$list") "$state/pristine")
[ -z "$bad" ] || die "these files exist upstream; change them through patches/ instead:
$bad"
n=0
for f in $list; do
	if ! cmp -s "$f" "$src/$f"; then
		mkdir -p "$src/$(dirname "$f")"
		cp "$f" "$src/$f"
		n=$((n + 1))
	fi
done
# Drop files a previous overlay added that the repository no longer has.
if [ -f "$state/overlay" ]; then
	comm -23 "$state/overlay" <(echo "$list") | while read -r f; do
		[ -n "$f" ] && rm -f "$src/$f" && echo "tree: removed stale $f"
	done
fi
echo "$list" > "$state/overlay"
echo "tree: $src ready ($n file(s) updated from the repository)"
