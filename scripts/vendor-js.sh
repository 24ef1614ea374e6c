#!/usr/bin/env bash
# The status page's vendored scripts (src/callgate/api/admin/static/VENDORED): fetch each
# pinned version with `npm pack`, check its sha256 against the one recorded, and write it
# under static/. `--check` fetches nothing: it only checks the committed files.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
static="$here/src/callgate/api/admin/static"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
while read -r package version inner file sha licence; do
  case "$package" in ''|'#'*) continue ;; esac
  if [ "$check_only" -eq 1 ]; then
    got="$(sha256sum "$static/$file" | cut -d' ' -f1)"
  else
    command -v npm >/dev/null || { echo "vendor-js: npm is needed" >&2; exit 2; }
    (cd "$work" && npm pack --silent "$package@$version" >/dev/null)
    tarball="$(ls "$work"/*.tgz)"
    tar -xzf "$tarball" -C "$work" "$inner"
    got="$(sha256sum "$work/$inner" | cut -d' ' -f1)"
    if [ "$got" = "$sha" ]; then cp "$work/$inner" "$static/$file"; fi
    rm -rf "${work:?}"/*
  fi
  if [ "$got" = "$sha" ]; then
    echo "vendor-js: $file ($package $version, $licence) ok"
  else
    echo "vendor-js: $file ($package $version): sha256 $got, recorded $sha" >&2
    status=1
  fi
done < "$static/VENDORED"
exit "$status"
