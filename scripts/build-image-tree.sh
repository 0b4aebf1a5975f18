#!/usr/bin/env bash
# Builds the image's runtime tree into DEST: everything the Dockerfile's
# runtime stage copies to /opt/xlb, and nothing of the toolchain that builds
# it. The Dockerfile's build stage runs it, and so does test/e2e/image.test.ts,
# which then runs agents from the tree in a lab.
#
#   DEST/bin/xlb              the command: DEST/bin/node on the compiled entry
#   DEST/bin/node             Node.js, the official build from the npm registry
#                             (package node-linux-<arch>), without npm
#   DEST/dist/src/            the control plane, compiled (tsconfig.build.json)
#   DEST/src/ui/              the service map page's files
#   DEST/node_modules/        runtime dependencies only (npm ci --omit=dev)
#   DEST/package.json         with the lock file: the package root the code
#                             finds the files below from (src/util/package-root.ts)
#   DEST/xdp/build/           the BPF objects (make -C xdp)
#   DEST/api/hubble/          Hubble's protos (the Observer API xlb serves)
#   DEST/api/gobgp/           gobgp's API protos, copied from Debian's
#                             golang-github-osrg-gobgp-dev (GOBGP_API_DIR)
#   DEST/share/doc/           Node.js's and gobgp's licence texts
#
# What the tree runs but does not hold comes from Debian packages, listed in
# scripts/image-runtime-packages.txt (gobgpd, iproute2, arping, libbpf1, ...).
#
# Needs, on the building machine: clang and make (the BPF objects), npm and
# this checkout's development dependencies (tsc), golang-github-osrg-gobgp-dev,
# and the npm registry. Usage: scripts/build-image-tree.sh DEST
# (DEST is created; it must not exist, or be empty).
#
# XLB_NODE_VERSION: the Node.js version (default below; >= 20, as package.json's
# engines say). GOBGP_API_DIR: where gobgp's protos are.
set -euo pipefail

NODE_VERSION=${XLB_NODE_VERSION:-24.22.3}
GOBGP_API_DIR=${GOBGP_API_DIR:-/usr/share/gocode/src/github.com/osrg/gobgp/api}

die() { echo "build-image-tree.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: scripts/build-image-tree.sh DEST"
src=$(cd "$(dirname "$0")/.." && pwd)
dest=$1
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then die "$dest exists and is not empty"; fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64) node_arch=arm64 ;;
  *) die "no Node.js build for $(uname -m) here (x86_64 and aarch64 only)" ;;
esac
for f in gobgp.proto attribute.proto capability.proto; do
  [ -f "$GOBGP_API_DIR/$f" ] || die "$GOBGP_API_DIR/$f is missing: install golang-github-osrg-gobgp-dev, or set GOBGP_API_DIR"
done
[ -x "$src/node_modules/.bin/tsc" ] || die "$src/node_modules/.bin/tsc is missing: run npm ci (with the development dependencies) first"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The BPF objects: a no-op when they are up to date.
make -s -C "$src/xdp"
mkdir -p "$dest/xdp/build"
cp "$src"/xdp/build/*.bpf.o "$dest/xdp/build/"

# The control plane, compiled: dist/src/... as in a checkout's npm run build:ts.
"$src/node_modules/.bin/tsc" -p "$src/tsconfig.build.json" --outDir "$dest/dist"
mkdir -p "$dest/src/ui"
find "$src/src/ui" -maxdepth 1 -type f ! -name '*.ts' -exec cp {} "$dest/src/ui/" \;

# Runtime dependencies only. No install scripts: koffi finds its prebuilt
# binary in its @koromix/koffi-linux-<arch> dependency without them.
cp "$src/package.json" "$src/package-lock.json" "$dest/"
(cd "$dest" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)

# Node.js: the official binary as the npm registry carries it (what the
# `node` package installs), checked against the registry's integrity.
(cd "$tmp" && npm pack --silent "node-linux-$node_arch@$NODE_VERSION" >/dev/null)
tar -xzf "$tmp/node-linux-$node_arch-$NODE_VERSION.tgz" -C "$tmp" package/bin/node package/LICENSE
mkdir -p "$dest/bin" "$dest/share/doc/node" "$dest/share/doc/gobgp"
install -m 0755 "$tmp/package/bin/node" "$dest/bin/node"
cp "$tmp/package/LICENSE" "$dest/share/doc/node/LICENSE"
[ "$("$dest/bin/node" --version)" = "v$NODE_VERSION" ] || die "bin/node is not Node.js $NODE_VERSION"

# The protos: Hubble's from this repository, gobgp's from its Debian package.
mkdir -p "$dest/api/gobgp"
cp -r "$src/api/hubble" "$dest/api/"
cp "$GOBGP_API_DIR"/{gobgp,attribute,capability}.proto "$dest/api/gobgp/"
gobgp_copyright=/usr/share/doc/golang-github-osrg-gobgp-dev/copyright
[ ! -f "$gobgp_copyright" ] || cp "$gobgp_copyright" "$dest/share/doc/gobgp/copyright"

cat >"$dest/bin/xlb" <<'EOF'
#!/bin/sh
# xlb from the image's tree (scripts/build-image-tree.sh): the tree's own
# Node.js on the compiled control plane.
root=$(dirname "$(dirname "$(readlink -f "$0")")")
exec "$root/bin/node" "$root/dist/src/cli/main.js" "$@"
EOF
chmod 0755 "$dest/bin/xlb"
echo "build-image-tree.sh: $dest ($(du -sh "$dest" | cut -f1), Node.js $NODE_VERSION)"
