#!/bin/bash
# A kind node image built offline, for `make loadtest TARGET=kind` and the kind tests of `make test`.
#
#   node-image.sh build   build once (cached by a content key), confine kind's Docker network, print the image
#
# kind itself is `go install sigs.k8s.io/kind@v0.33.0`, as kind's quick start documents (the Makefile's $(KIND)).
# The image follows kind's own recipes, read from the kind module ($GOMODCACHE/sigs.k8s.io/kind@$KIND_VERSION),
# and builds as little as it can:
# - the base image (images/base/Dockerfile): its files/ (systemd units, entrypoint, containerd config) and the
#   Debian packages it installs, on debootstrap's root (harness-base:bookworm, scripts/docker-setup.sh) instead of
#   debian:trixie-slim; containerd, runc and the CNI plugins are Debian 12's packages (containerd 1.6, which
#   reads the version-2 config kind ships, as the test cluster's containerd does), not builds of their modules;
# - the node image (pkg/build/nodeimage): kubeadm, kubelet and kubectl in /usr/bin, /kind/version, and the
#   images that `kubeadm config images list` names imported into the node's containerd, then a commit.
# What comes from where:
# - kubelet, the control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy), etcd,
#   metrics-server and the pod sandbox (pause): the test cluster's binaries (scripts/cluster, same Kubernetes
#   version, same cache, built once under its lock). etcd is the cluster's v3.6.4, under the tag kubeadm names.
# - kubeadm and kubectl: built here from this directory's go.mod, which resolves every module it shares with
#   the cluster's to the same version (tests/test_kind_node_image.py checks it), so Go's build cache already
#   holds most of their packages; crictl (kind load reads images with it) from cri-tools' module; CoreDNS at the
#   version kubeadm names with the plugins kubeadm's Corefile uses (coredns/main.go).
# Where this differs from kind's image, and why:
# - no kindnetd: its source is a nested module of the kind repository that the Go module proxy does not serve
#   (sigs.k8s.io/kind/images/kindnetd). The node's CNI is the conflist kindnetd would write for it (ptp +
#   host-local over the node's pod range, portmap), in /etc/cni/net.d from the start, fixed to the first node's
#   range: one-node clusters only. /kind/manifests/default-cni.yaml, which kind applies as the default CNI,
#   records that conflist in a ConfigMap (kube-system/harness-node-cni) instead of starting kindnetd.
# - no local-path-provisioner (nothing of the harness uses volumes): without /kind/manifests/default-storage.yaml
#   kind installs its built-in host-path StorageClass instead; no nfs-common or open-iscsi either.
# - the pod sandbox is the test cluster's pause, named harness.local/pause:1 in the containerd config, and
#   metrics-server (the test cluster's build) is in the image for charts/metrics-server.
# - no packet to a Service IP that kube-proxy has not programmed yet leaves the node: a packet still addressed
#   to the Service range after kube-proxy's rules (harness-service-range.service) is rejected, so such a
#   connection fails at once and is retried, instead of going out through Docker's default route (an
#   unreachable route cannot do it: the API server's own connections are routed before kube-proxy's DNAT). Measured before this: the API server's first
#   connection to metrics-server's Service, made before kube-proxy's rule, went out of the machine and got a
#   404 from the network's gateway, and metrics-server never became available.
# - containerd keeps pods' oom_score_adj at or above its own (restrict_oom_score_adj = true), as kind does in a
#   user namespace: this machine drops CAP_SYS_RESOURCE even for root (scripts/docker/runc-bounded).
#
# Cache: the Go builds in $HARNESS_CLUSTER_CACHE/kind-node-<key>/bin, keyed by the modules and versions; the
# node image is tagged harness.local/kind-node:<Kubernetes version>-<key of this script, the modules, the cluster
# binaries and the Debian base image>, so a second build takes a second.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
K8S_VERSION="v1.34.4"
KIND_VERSION="v0.33.0"
CRICTL_VERSION="v1.34.0"
# As kubeadm $K8S_VERSION names them (`kubeadm config images list`; checked when the image is built).
COREDNS_VERSION="v1.12.1"
ETCD_TAG="3.6.5-0"
METRICS_SERVER_TAG="v0.8.0"
PAUSE_IMAGE="harness.local/pause:1"
POD_RANGE="10.244.0.0/24"
# kind's default serviceSubnet.
SERVICE_RANGE="10.96.0.0/16"
# kind's base packages (images/base/Dockerfile), less nfs-common and open-iscsi (volumes), plus Debian's
# containerd, runc and CNI plugins.
BASE_PACKAGES=(systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz
    fuse-overlayfs e2fsprogs bash ca-certificates curl jq procps containerd runc containernetworking-plugins)
CACHE_ROOT="${HARNESS_CLUSTER_CACHE:-$HOME/.cache/harness-cluster}"
DEBIAN_BASE="harness-base:bookworm"
export PATH="$PATH:/usr/local/go/bin"

log() { echo "kind-image: $*" >&2; }
die() {
    echo "error: kind-image: $*" >&2
    exit 1
}

# The Go builds' key: the pinned modules and versions; the image's key: all of this script as well.
tools_key() {
    { cat "$HERE/go.mod" "$HERE/go.sum" "$HERE"/coredns/*; grep -E '^[A-Z_]+_VERSION=' "$HERE/node-image.sh"; } |
        sha256sum | cut -c1-12
}
image_key() {
    { cat "$HERE/node-image.sh" "$HERE/go.mod" "$HERE/go.sum" "$HERE"/coredns/*; echo "$1"; } | sha256sum | cut -c1-12
}

# ------------------------------------------------------------------------------------------ Go builds

tools() {
    TOOLS="$CACHE_ROOT/kind-node-$(tools_key)/bin"
    if [ -f "$TOOLS/.complete" ]; then
        return
    fi
    command -v go >/dev/null || die "Go is needed to build kubeadm, kubectl, crictl and CoreDNS (go not on PATH)"
    log "building kubeadm and kubectl $K8S_VERSION, crictl $CRICTL_VERSION and CoreDNS $COREDNS_VERSION into $TOOLS"
    local started=$SECONDS tmp="$TOOLS.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (
        # The cluster build's settings (scripts/cluster/cluster.sh), so its compiled packages are reused.
        export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
        cd "$HERE"
        local version_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
        version_flags+=" -X k8s.io/component-base/version.gitMajor=1"
        version_flags+=" -X k8s.io/component-base/version.gitMinor=34"
        version_flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
        version_flags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
        go build -trimpath -ldflags="-s -w $version_flags" -o "$tmp/" k8s.io/kubernetes/cmd/kubeadm \
            k8s.io/kubernetes/cmd/kubectl
        GOBIN="$tmp" go install -trimpath \
            -ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
            "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
        cd coredns
        go build -trimpath -ldflags="-s -w" -o "$tmp/coredns" .
    ) || die "building the node image's binaries failed (see the Go output above)"
    touch "$tmp/.complete"
    rm -rf "$TOOLS"
    mv "$tmp" "$TOOLS"
    log "binaries built in $((SECONDS - started)) s"
}

# ------------------------------------------------------------------------------------------ images

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# docker_build NAME CONTEXT: a classic build (no BuildKit: Docker 20.10's), its log kept only on failure.
docker_build() {
    DOCKER_BUILDKIT=0 docker build --network host -t "$1" "$2" >"$2.log" 2>&1 || {
        echo "error: kind-image: building $1 failed; last lines of $2.log:" >&2
        tail -n 30 "$2.log" >&2
        exit 1
    }
    rm -f "$2.log"
}

# scratch_image NAME ENTRYPOINT FILE:PATH...: an image holding only the given static binaries.
scratch_image() {
    local name="$1" entrypoint="$2" dir item
    shift 2
    dir="$(mktemp -d)"
    for item in "$@"; do
        mkdir -p "$dir/$(dirname "${item#*:}")"
        cp "${item%%:*}" "$dir/${item#*:}"
    done
    mkdir -p "$dir/tmp" && chmod 1777 "$dir/tmp"
    tar -C "$dir" -c . | docker import --change "ENTRYPOINT $entrypoint" \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$name" >/dev/null
    rm -rf "$dir"
}

# base_image NAME: kind's images/base recipe on the debootstrap root.
base_image() {
    local name="$1" context files
    files="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files"
    [ -d "$files" ] || (cd "$HERE" && go mod download sigs.k8s.io/kind@"$KIND_VERSION")
    [ -d "$files" ] || die "kind's base image files are not in the module cache ($files)"
    context="$(mktemp -d /tmp/harness-kind-base.XXXXXX)"
    cp -r "$files" "$context/files"
    chmod -R u+w "$context/files"
    cp "$TOOLS/crictl" "$context/crictl"
    # Debian's containerd is in /usr/bin; the pod sandbox and the pod network, as the header says.
    sed -i 's#^ExecStart=/usr/local/bin/containerd#ExecStart=/usr/bin/containerd#' \
        "$context/files/etc/systemd/system/containerd.service"
    sed -i -e "s#sandbox_image = .*#sandbox_image = \"$PAUSE_IMAGE\"#" \
        -e 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$context/files/etc/containerd/config.toml"
    mkdir -p "$context/files/etc/cni/net.d" "$context/files/kind/manifests"
    cat >"$context/files/etc/cni/net.d/10-harness.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "harness",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": "$POD_RANGE"}]]
      },
      "mtu": 1500
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    {
        printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: harness-node-cni\n  namespace: kube-system\n'
        printf 'data:\n  10-harness.conflist: |\n'
        sed 's/^/    /' "$context/files/etc/cni/net.d/10-harness.conflist"
    } >"$context/files/kind/manifests/default-cni.yaml"
    cat >"$context/files/etc/systemd/system/harness-service-range.service" <<EOF
[Unit]
Description=Packets to Service IPs kube-proxy has not programmed are rejected, never routed out of the node
Before=containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'iptables -A OUTPUT -d $SERVICE_RANGE -j REJECT && iptables -A FORWARD -d $SERVICE_RANGE -j REJECT'

[Install]
WantedBy=multi-user.target
EOF
    cat >"$context/Dockerfile" <<EOF
FROM $DEBIAN_BASE
ENV container=docker
STOPSIGNAL SIGRTMIN+3
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* && rm -f /kind/README.txt \\
    && DEBIAN_FRONTEND=noninteractive clean-install ${BASE_PACKAGES[*]}
# After the packages: kind's /etc (its containerd config and units) replaces what Debian's containerd installed.
COPY files/etc/ /etc/
RUN find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* \\
    && rm -f /etc/systemd/system/*.wants/* \\
    && rm -f /lib/systemd/system/local-fs.target.wants/* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \\
    && rm -f /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /usr/lib/systemd/systemd /sbin/init \\
    && mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin
RUN systemctl enable kubelet.service && systemctl enable containerd.service \\
    && systemctl enable harness-service-range.service \\
    && systemctl enable undo-mount-hacks.service && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests
COPY crictl /usr/local/bin/crictl
RUN ctr oci spec \\
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
        | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
    && containerd --version && runc --version && crictl --version
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
EOF
    docker_build "$name" "$context"
    rm -rf "$context"
}

# kube_proxy_image NAME BINARY: kube-proxy needs iptables and conntrack beside it.
kube_proxy_image() {
    local name="$1" context
    context="$(mktemp -d /tmp/harness-kube-proxy.XXXXXX)"
    cp "$2" "$context/kube-proxy"
    cat >"$context/Dockerfile" <<EOF
FROM $DEBIAN_BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \\
    conntrack kmod && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY kube-proxy /usr/local/bin/kube-proxy
EOF
    docker_build "$name" "$context"
    rm -rf "$context"
}

# node_image NAME BASE CLUSTER_BIN: kind's node-image build (pkg/build/nodeimage) on BASE.
node_image() {
    local name="$1" base="$2" cluster_bin="$3" id images=() image
    local registry="registry.k8s.io"
    for component in kube-apiserver kube-controller-manager kube-scheduler; do
        scratch_image "$registry/$component:$K8S_VERSION" "[\"/usr/local/bin/$component\"]" \
            "$cluster_bin/$component:usr/local/bin/$component"
        images+=("$registry/$component:$K8S_VERSION")
    done
    kube_proxy_image "$registry/kube-proxy:$K8S_VERSION" "$cluster_bin/kube-proxy"
    images+=("$registry/kube-proxy:$K8S_VERSION")
    scratch_image "$registry/etcd:$ETCD_TAG" '["/usr/local/bin/etcd"]' "$cluster_bin/etcd:usr/local/bin/etcd"
    scratch_image "$registry/coredns/coredns:$COREDNS_VERSION" '["/coredns"]' "$TOOLS/coredns:coredns"
    scratch_image "$PAUSE_IMAGE" '["/pause"]' "$cluster_bin/pause:pause"
    scratch_image "$registry/metrics-server/metrics-server:$METRICS_SERVER_TAG" '["/metrics-server"]' \
        "$cluster_bin/metrics-server:metrics-server"
    images+=("$registry/etcd:$ETCD_TAG" "$registry/coredns/coredns:$COREDNS_VERSION" "$PAUSE_IMAGE"
        "$registry/metrics-server/metrics-server:$METRICS_SERVER_TAG")

    id="$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$base" infinity)"
    # shellcheck disable=SC2064  # the id is known now
    trap "docker rm -f -v $id >/dev/null 2>&1" EXIT
    for binary in "$TOOLS/kubeadm" "$cluster_bin/kubelet" "$TOOLS/kubectl"; do
        docker cp "$binary" "$id:/usr/bin/$(basename "$binary")"
        docker exec "$id" chmod 755 "/usr/bin/$(basename "$binary")"
        docker exec "$id" chown root:root "/usr/bin/$(basename "$binary")"
    done
    docker exec "$id" bash -c "echo -n $K8S_VERSION > /kind/version"
    # Every image kubeadm will ask for must be among those imported (nothing can be pulled).
    local wanted
    wanted="$(docker exec "$id" kubeadm config images list --kubernetes-version "$K8S_VERSION" | grep -v /pause:)"
    for image in $wanted; do
        printf '%s\n' "${images[@]}" | grep -qx "$image" || die "kubeadm asks for $image, which this script does not build"
    done
    docker exec "$id" bash -c "nohup containerd > /dev/null 2>&1 &"
    docker exec "$id" bash -c 'for i in $(seq 20); do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done; ctr version >/dev/null'
    docker save "${images[@]}" | docker exec -i "$id" ctr --namespace=k8s.io images import \
        --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
    docker exec "$id" pkill containerd
    docker exec "$id" bash -c 'for i in $(seq 20); do pgrep -x containerd >/dev/null || break; sleep 1; done'
    docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$id" "$name" >/dev/null
    docker rm -f -v "$id" >/dev/null
    trap - EXIT
    docker image rm "${images[@]}" >/dev/null
}

# confine_network: kind's Docker network ("kind", made here as kind makes it when missing) forwards nothing
# out of this machine: a DOCKER-USER rule drops what its bridge would send to any other interface. Published
# ports (127.0.0.1) and the nodes' answers to this machine do not pass the FORWARD chain and still work.
confine_network() {
    if ! docker network inspect kind >/dev/null 2>&1; then
        docker network create -d bridge -o com.docker.network.bridge.enable_ip_masquerade=true \
            -o com.docker.network.driver.mtu=1500 kind >/dev/null
    fi
    local bridge
    bridge="$(docker network inspect kind --format '{{index .Options "com.docker.network.bridge.name"}}')"
    [ -n "$bridge" ] || bridge="br-$(docker network inspect kind --format '{{.Id}}' | cut -c1-12)"
    iptables -C DOCKER-USER -i "$bridge" ! -o "$bridge" -j DROP 2>/dev/null ||
        iptables -I DOCKER-USER -i "$bridge" ! -o "$bridge" -j DROP ||
        die "could not add the DOCKER-USER rule that keeps kind's network ($bridge) on this machine"
}

# cluster_bin: the test cluster's binaries, built once under its lock (a build in progress elsewhere is waited for).
cluster_bin() { bash "$ROOT/scripts/cluster/cluster.sh" build | tail -n 1; }

# node_image_name CLUSTER_BIN: the image's name, from every input's key.
node_image_name() {
    local base_id
    base_id="$(docker image inspect --format '{{.Id}}' "$DEBIAN_BASE" 2>/dev/null)" ||
        die "no $DEBIAN_BASE image (run: bash scripts/docker-setup.sh)"
    echo "harness.local/kind-node:$K8S_VERSION-$(image_key "$(basename "$(dirname "$1")") $base_id")"
}

build() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "Docker is needed (run: bash scripts/docker-setup.sh)"
    local bin name started=$SECONDS
    bin="$(cluster_bin)"
    name="$(node_image_name "$bin")"
    confine_network
    if image_exists "$name"; then
        echo "$name"
        return
    fi
    tools
    local base="harness.local/kind-base:${name##*:}"
    log "building $name (kind's base-image and node-image recipes, offline)"
    image_exists "$base" || base_image "$base"
    log "base image $base ready ($((SECONDS - started)) s)"
    node_image "$name" "$base" "$bin"
    docker image rm "$base" >/dev/null
    # Earlier node images of this script are superseded.
    docker image ls --format '{{.Repository}}:{{.Tag}}' harness.local/kind-node | grep -vx "$name" |
        xargs -r docker image rm >/dev/null 2>&1 || true
    log "node image built in $((SECONDS - started)) s"
    echo "$name"
}

case "${1:-}" in
build) build ;;
*)
    echo "usage: $0 build" >&2
    exit 2
    ;;
esac
