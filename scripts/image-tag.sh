#!/usr/bin/env bash
# Content tag of one of our images: <version>-<12 hex digits of a SHA-256 over its build inputs>, i.e.
# images/<name>/Dockerfile, .dockerignore and every file its COPY lines take from the build context
# (not the --from= stages), minus what .dockerignore leaves out of the context (__pycache__, *.pyc,
# tool caches). A changed source file gives a new tag, so `make kind-up` deploys the rebuilt image:
# with a fixed tag and IfNotPresent, `kind load` would re-tag the node's image but no Deployment, Job
# or SparkApplication would change and the old pods would keep running. Unchanged inputs give the same
# tag (no rollout). Run from the build context (the repository root).
#   scripts/image-tag.sh app|spark     -> e.g. 0.1.0-3f9c2a7b1d0e
set -euo pipefail
name="${1:?usage: image-tag.sh app|spark}"
version="${IMAGE_VERSION:-0.1.0}"
dockerfile="images/$name/Dockerfile"
[ -f "$dockerfile" ] || { echo "image-tag: no $dockerfile in $PWD" >&2; exit 1; }

if command -v sha256sum >/dev/null 2>&1; then sha() { sha256sum; }
else sha() { shasum -a 256; }  # macOS
fi

# Sources of the COPY lines without --from: every argument but the last, flags dropped.
sources() {
    awk 'toupper($1) == "COPY" && $0 !~ /--from=/ {
        n = 0
        for (i = 2; i <= NF; i++) if ($i !~ /^--/) args[++n] = $i
        for (i = 1; i < n; i++) print args[i]
    }' "$dockerfile"
}

# Into a variable first: a failure anywhere (pipefail) stops here instead of printing a partial tag.
tag="$({
    printf '%s\n' "$dockerfile" .dockerignore
    sources | while read -r src; do
        src="${src%/}"
        [ -e "$src" ] || { echo "image-tag: $dockerfile copies $src, which does not exist" >&2; exit 1; }
        find "$src" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.pytest_cache/*' \
            ! -path '*/.ruff_cache/*'
    done
} | LC_ALL=C sort -u | while read -r file; do
    printf '%s  %s\n' "$(sha < "$file" | cut -c1-64)" "$file"
done | sha | cut -c1-12)"
printf '%s-%s\n' "$version" "$tag"
