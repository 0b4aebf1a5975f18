# xlb agent image: Debian 12 with the toolchain to build the BPF objects and
# the Node.js runtime. Built and run by docker-compose.yml (host network,
# /sys/fs/bpf from the host).
FROM debian:12
WORKDIR /opt/xlb
COPY . .
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      clang llvm libbpf-dev libbpf1 bpftool linux-libc-dev make iproute2 ethtool nodejs npm ca-certificates \
 && npm ci --no-audit --no-fund --loglevel=error \
 && make -C xdp \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["node", "/opt/xlb/bin/xlb.js"]
CMD ["agent", "--config", "/etc/xlb/agent.yaml"]
