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
# The commit built, for the xlb_build_info metric's revision label
# (docker build --build-arg XLB_REVISION=$(git rev-parse HEAD) .); .git is not copied.
ARG XLB_REVISION=unknown
ENV XLB_REVISION=$XLB_REVISION
ENTRYPOINT ["node", "/opt/xlb/bin/xlb.js"]
CMD ["agent", "--config", "/etc/xlb/agent.yaml"]
