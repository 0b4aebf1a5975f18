# The xlb agent image, in two stages (docs/operations.md, "The image"):
#
#   build    Debian 12 with the toolchain: clang, llvm, make and libbpf-dev for
#            the BPF objects, npm and the development dependencies for tsc,
#            gobgp's sources for its API protos. scripts/build-image-tree.sh
#            assembles the runtime tree in /opt/xlb.
#   runtime  Debian 12 slim, the packages of scripts/image-runtime-packages.txt
#            (gobgpd, iproute2, arping, libbpf1, bpftool) and /opt/xlb: Node.js
#            (the official build, from the npm registry), the compiled control
#            plane, its runtime dependencies, the BPF objects and the protos.
#            Nothing of the toolchain.
#
# test/e2e/image.test.ts builds the same tree with the same script and runs
# agents from it, with a PATH of only the runtime stage's packages.
#
#   docker build -t xlb/agent:0.1.0 .
#   docker build --build-arg XLB_NODE_VERSION=22.23.5 -t xlb/agent:0.1.0 .   # another Node.js (>= 20)

FROM debian:12 AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      clang llvm libbpf-dev bpftool linux-libc-dev make ca-certificates nodejs npm golang-github-osrg-gobgp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first: this layer is rebuilt only when the lock file changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY . .
# Empty: the script's default version.
ARG XLB_NODE_VERSION=
RUN XLB_NODE_VERSION="$XLB_NODE_VERSION" scripts/build-image-tree.sh /opt/xlb

FROM debian:12-slim
COPY scripts/image-runtime-packages.txt /tmp/
RUN apt-get update -qq \
 && sed 's/#.*//' /tmp/image-runtime-packages.txt | xargs \
      env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/image-runtime-packages.txt
COPY --from=build /opt/xlb /opt/xlb
ENV PATH=/opt/xlb/bin:$PATH
# The commit built, for the xlb_build_info metric's revision label
# (docker build --build-arg XLB_REVISION=$(git rev-parse HEAD) .); .git is not copied.
ARG XLB_REVISION=unknown
ENV XLB_REVISION=$XLB_REVISION
ENTRYPOINT ["xlb"]
CMD ["agent", "--config", "/etc/xlb/agent.yaml"]
