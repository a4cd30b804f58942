#!/usr/bin/env bash
# make release VERSION=vX.Y.Z: tag every published module at VERSION, from a
# clean tree, after the checks and tests pass on the tree as it will be
# tagged. docs/releasing.md explains each step.
set -euo pipefail
version=${1:?usage: release.sh VERSION}
cd "$(git rev-parse --show-toplevel)"
fail() { echo "release: $*" >&2; exit 1; }
rel() { (cd release && GOWORK=off go run . -root .. "$@"); }

[ -z "$(git status --porcelain)" ] || fail "the tree has uncommitted changes; commit or stash them first"
[ "$(git rev-parse --abbrev-ref HEAD)" = main ] || fail "releases are made from main, not $(git rev-parse --abbrev-ref HEAD)"
rel check-next "$version"
mods=$(rel modules | cut -d' ' -f1)
for m in $mods; do
	if git rev-parse -q --verify "refs/tags/$m/$version" >/dev/null; then fail "tag $m/$version exists already"; fi
done
# Too small a version for the API changes since the last tags stops here.
rel apidiff -next "$version"

rel set-version "$version"
# A failure from here on leaves the tree changed: `git checkout -- .` undoes it.
make check test || fail "make check test failed at $version; the tree is left as set-version made it (undo: git checkout -- .)"
git commit -q -am "release $version"
tags=()
for m in $mods; do
	git tag -a "$m/$version" -m "$m $version"
	tags+=("$m/$version")
done
echo "released $version: ${tags[*]}"
echo "publish with: git push origin main ${tags[*]}"
