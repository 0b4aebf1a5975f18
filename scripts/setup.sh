#!/usr/bin/env bash
# Sets up everything xlb needs on Debian 12, as root, and is quick when nothing
# is missing: Debian packages, bpffs, npm dependencies, the BPF objects, a
# typecheck of the TypeScript, and `xlb` on PATH. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (xlb loads BPF programs and builds network namespaces)" >&2
  exit 1
fi

# Debian packages: toolchain and libbpf for the datapath, iproute2/ethtool/socat/curl for the lab,
# bpftool for BTF, gobgpd and bird2 for BGP, dnsmasq-base for the lab's
# cluster DNS with dig (bind9-dnsutils) and dnsperf to query it, chromium for the
# service map page's tests (driven by playwright-core, which brings no browser),
# prometheus for promtool (the tests check the metrics and alert rules with it), Go with
# sprig, sigs.k8s.io/yaml and gojsonschema for scripts/helm-render (renders the Helm chart
# as Helm does, for deploy/ and its tests), and friends.
PACKAGES=(clang llvm libbpf-dev libbpf1 bpftool linux-libc-dev make iproute2 ethtool socat curl
          iputils-ping iputils-arping tcpdump iptables nftables wrk gobgpd golang-github-osrg-gobgp-dev bird2
          dnsmasq-base bind9-dnsutils dnsperf util-linux docker-compose chromium prometheus
          golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev golang-github-xeipuuv-gojsonschema-dev)
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# gobgpd is started by xlb itself, never by systemd; the prometheus package is
# here for promtool only, not for a server.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now gobgpd bird prometheus 2>/dev/null || true
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: Node.js $node_major is too old; xlb and its dependencies need 20 or newer (Debian 12's nodejs is 18)" >&2
  exit 1
fi

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# npm dependencies, only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

make -s -C xdp
npx --no-install tsc -p tsconfig.json --noEmit --incremental --tsBuildInfoFile node_modules/.cache/xlb.tsbuildinfo

# `xlb` on PATH, pointing at this checkout.
if [ "$(readlink -f "$(command -v xlb 2>/dev/null || true)")" != "$(readlink -f bin/xlb.js)" ]; then
  ln -sf "$(pwd)/bin/xlb.js" /usr/local/bin/xlb
fi
echo "setup.sh: ready ($(node --version), $(clang --version | head -1 | sed 's/ (.*//'), kernel $(uname -r))"
