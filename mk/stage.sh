#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Run one build stage and print how long it took: stage.sh NAME CMD...
name=$1
shift
start=$(date +%s)
echo "== stage $name: start"
"$@"
rc=$?
end=$(date +%s)
if [ $rc = 0 ]; then
	echo "== stage $name: done in $((end - start))s"
else
	echo "== stage $name: FAILED (exit $rc) after $((end - start))s" >&2
fi
exit $rc
