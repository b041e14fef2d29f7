#!/bin/sh
# Fetch axe-core (Deque's accessibility rules engine, MPL-2.0), pinned,
# into the cache (default /var/cache/passerelle) for the status page's
# browser test (integration/browser_test.go), which injects it into every
# page and fails on serious or critical violations. Idempotent; needs npm
# the first time. Prints the path of axe.min.js.
#
#   sh tools/axe/fetch.sh [CACHE]
set -eu
CACHE=${1:-${PASSERELLE_CACHE:-/var/cache/passerelle}}
VERSION=4.14.1
DIR="$CACHE/axe-core-$VERSION"
if [ ! -s "$DIR/axe.min.js" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "axe-core@$VERSION" >/dev/null && tar -xzf "axe-core-$VERSION.tgz")
	mkdir -p "$DIR"
	cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$DIR/"
fi
echo "$DIR/axe.min.js"
