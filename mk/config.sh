#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Configure a kernel build directory: tinyconfig + the given fragments, then
# check that every option the fragments ask for has the value they ask for
# (merge_config.sh only warns; a silently dropped option would make the tests
# meaningless).
#
# Usage: config.sh SRC_DIR OBJ_DIR FRAGMENT...
set -euo pipefail
src=$1 obj=$2
shift 2
frags=("$@")

export PATH=/usr/bin:$PATH
mkdir -p "$obj"

# Skip when neither the fragments nor the tree (patches, overlaid Kconfig files) changed.
stamp=$( { cat "${frags[@]}"; cat "$src.state/stamp" 2>/dev/null
	find "$src" -path "$src/tools" -prune -o -name 'Kconfig*' -newer "$src/Makefile" -print0 |
		sort -z | xargs -0r cat; } | sha256sum | cut -d' ' -f1)
if [ -f "$obj/.config" ] && [ "$(cat "$obj/.config.rustmig" 2>/dev/null)" = "$stamp" ]; then
	echo "config: $obj/.config up to date"
	exit 0
fi
make -s -C "$src" O="$obj" LLVM=1 tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "${frags[@]}" >"$obj/merge.log" 2>&1 || {
	cat "$obj/merge.log" >&2; exit 1; }
make -s -C "$src" O="$obj" LLVM=1 olddefconfig >/dev/null

bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) want=$line; sym=${line%%=*} ;;
	'# CONFIG_'*' is not set') sym=${line#\# }; sym=${sym%% *}; want=$line ;;
	*) continue ;;
	esac
	got=$(grep -E "^($sym=|# $sym is not set)" "$obj/.config" || true)
	if [ "$want" != "$got" ] && ! { [ -z "$got" ] && [ "${want#\# }" != "$want" ]; }; then
		echo "config: $sym: wanted '$want', got '${got:-unset}'" >&2
		bad=1
	fi
done < <(cat "${frags[@]}")
[ $bad = 0 ] || { echo "config: fragment options were not applied (missing dependency?)" >&2; exit 1; }
echo "$stamp" > "$obj/.config.rustmig"
echo "config: $obj/.config ready"
