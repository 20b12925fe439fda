#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# QEMU 11.1 from trixie-backports, beside the machine's own QEMU: its
# packages unpacked into DIR (not installed), and DIR/qemu-system-x86_64, a
# wrapper that runs it with its own firmware and modules. Idempotent.
#
# Usage: qemu-11.sh DIR
set -euo pipefail
dir=$1
# The newest 11.1 that apt knows of (trixie-backports), else the one this was
# written against.
ver=$(apt-cache madison qemu-system-x86 2>/dev/null |
	awk -F'|' '$2 ~ /:11\.1\./ { gsub(/ /, "", $2); print $2; exit }')
ver=${ver:-1:11.1.3+ds-1~bpo13+1}
wrapper=$dir/qemu-system-x86_64
if [ -x "$wrapper" ] && "$wrapper" --version | grep -q 'version 11\.1'; then
	echo "qemu-11: $("$wrapper" --version | head -n 1)"
	exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/debs"
cd "$dir/debs"
apt-get download -q "qemu-system-x86=$ver" "qemu-system-common=$ver" "qemu-system-data=$ver" ||
	{ echo "qemu-11: cannot download QEMU $ver (is trixie-backports in the sources? make deps)" >&2; exit 1; }
for d in *.deb; do dpkg -x "$d" "$dir/root"; done
cat > "$wrapper" <<WRAP
#!/bin/sh
exec "$dir/root/usr/bin/qemu-system-x86_64" -L "$dir/root/usr/share/qemu" "\$@"
WRAP
chmod +x "$wrapper"
echo "qemu-11: $("$wrapper" --version | head -n 1)"
