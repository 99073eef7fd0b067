#!/bin/bash
# kind, and a kind node image, built offline from Go modules and Debian packages; for `make loadtest TARGET=kind`
# and the kind test in `make test`.
#
#   node-image.sh build   build once (cached) and print two lines: the kind binary and the node image's name
#   node-image.sh kind    the kind binary alone (built once)
#
# kind itself: `go install sigs.k8s.io/kind@$KIND_VERSION`, as kind's quick start documents.
# The node image follows kind's own recipes, read from the kind module ($GOMODCACHE/sigs.k8s.io/kind@$KIND_VERSION):
# - the base image (images/base/Dockerfile): its files/ (systemd units, entrypoint, containerd config), the
#   Debian packages it installs, and containerd, runc, crictl and the CNI plugins built from their Go modules
#   at the versions that Dockerfile names (crictl: the newest the Go proxy serves for this Kubernetes minor);
#   its root is debootstrap's (harness-base:bookworm, scripts/docker-setup.sh), not debian:trixie-slim;
# - the node image (pkg/build/nodeimage): kubeadm, kubelet and kubectl copied to /usr/bin, /kind/version, the
#   images that `kubeadm config images list` names imported into the node's containerd, then a commit.
#   The control-plane images hold the test cluster's binaries (scripts/cluster, same Kubernetes version and
#   cache); etcd is the version kubeadm names, coredns too, each built from its Go module.
# Where this differs from kind's image, and why:
# - no kindnetd: its source is a nested module of the kind repository that the Go module proxy does not serve
#   (sigs.k8s.io/kind/images/kindnetd). The node's CNI is the conflist kindnetd would write for it (ptp +
#   host-local over the node's pod range, portmap), in /etc/cni/net.d from the start, fixed to the first node's
#   range: one-node clusters only. /kind/manifests/default-cni.yaml, which kind applies as the default CNI,
#   records that conflist in a ConfigMap (kube-system/harness-node-cni) instead of starting kindnetd.
# - no local-path-provisioner (nothing of the harness uses volumes): without /kind/manifests/default-storage.yaml
#   kind installs its built-in host-path StorageClass instead.
# - the pod sandbox is the test cluster's pause (scripts/cluster/pause), named harness.local/pause:1 in the
#   containerd config, and metrics-server (the test cluster's build) is in the image for charts/metrics-server.
# - containerd keeps pods' oom_score_adj at or above its own (restrict_oom_score_adj = true), as kind does in a
#   user namespace: this machine drops CAP_SYS_RESOURCE even for root (see scripts/cluster/cluster.sh).
#
# Cache: binaries in $HARNESS_CLUSTER_CACHE/kind-<key>/bin, keyed by this directory's go.mod, go.sum and the
# versions above; the node image is tagged with a key of those and this script plus the cluster binaries' key
# (scripts/cluster), so a second build takes seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
K8S_VERSION="v1.34.4"
KIND_VERSION="v0.33.0"
# As kind's images/base/Dockerfile names them (crictl: v1.36.0 there, not served; v1.34.0 matches Kubernetes).
CONTAINERD_VERSION="v2.3.4"
RUNC_VERSION="v1.4.3"
CRICTL_VERSION="v1.34.0"
CNI_PLUGINS_VERSION="v1.9.1"
# As kubeadm $K8S_VERSION names them (`kubeadm config images list`).
COREDNS_VERSION="v1.12.1"
ETCD_TAG="3.6.5-0"
METRICS_SERVER_TAG="v0.8.0"
PAUSE_IMAGE="harness.local/pause:1"
POD_RANGE="10.244.0.0/24"
BASE_PACKAGES=(systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz
    fuse-overlayfs nfs-common open-iscsi e2fsprogs bash ca-certificates curl jq procps)
CACHE_ROOT="${HARNESS_CLUSTER_CACHE:-$HOME/.cache/harness-cluster}"
DEBIAN_BASE="harness-base:bookworm"
export PATH="$PATH:/usr/local/go/bin"

log() { echo "kind-image: $*" >&2; }
die() {
    echo "error: kind-image: $*" >&2
    exit 1
}

# The binaries' key: the pinned modules and versions; the images' key: all of this script as well.
tools_key() { { cat "$HERE/go.mod" "$HERE/go.sum"; grep -E '^[A-Z_]+_VERSION=' "$HERE/node-image.sh"; } | sha256sum | cut -c1-12; }
image_key() { cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/node-image.sh" | sha256sum | cut -c1-12; }

# ------------------------------------------------------------------------------------------ Go binaries

# go_install DIR VERSION PACKAGE...: `go install PACKAGE@VERSION` into DIR, each with its module's own go.mod.
go_install() {
    local dir="$1" version="$2" package
    shift 2
    for package in "$@"; do
        GOBIN="$dir" go install -trimpath -ldflags="${LDFLAGS:--s -w}" ${TAGS:+-tags "$TAGS"} "$package@$version"
    done
}

tools() {
    TOOLS="$CACHE_ROOT/kind-$KIND_VERSION-$(tools_key)/bin"
    if [ -f "$TOOLS/.complete" ]; then
        return
    fi
    command -v go >/dev/null || die "Go is needed to build kind and the node image's binaries (go not on PATH)"
    bash "$ROOT/scripts/install-system-packages.sh" libseccomp-dev gcc
    log "building kind $KIND_VERSION, containerd, runc, crictl, CNI plugins, coredns, etcd, kubeadm and kubectl"
    log "into $TOOLS (once; about 10-20 min on 2 cores with a cold Go cache)"
    local started=$SECONDS tmp="$TOOLS.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (
        export CGO_ENABLED=0 GOFLAGS="-buildvcs=false"
        go_install "$tmp" "$KIND_VERSION" sigs.k8s.io/kind
        # kind's BUILDTAGS: no optional snapshotters.
        TAGS="no_aufs no_zfs no_btrfs no_devmapper" LDFLAGS="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
            go_install "$tmp" "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/containerd \
            github.com/containerd/containerd/v2/cmd/ctr github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
        # runc needs cgo (nsenter) and libseccomp, as runc's own `make runc` builds it.
        CGO_ENABLED=1 TAGS="seccomp urfave_cli_no_docs" LDFLAGS="-s -w -X main.version=${RUNC_VERSION#v}" \
            go_install "$tmp" "$RUNC_VERSION" github.com/opencontainers/runc
        LDFLAGS="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
            go_install "$tmp" "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
        mkdir -p "$tmp/cni"
        go_install "$tmp/cni" "$CNI_PLUGINS_VERSION" github.com/containernetworking/plugins/plugins/ipam/host-local \
            github.com/containernetworking/plugins/plugins/main/loopback \
            github.com/containernetworking/plugins/plugins/main/ptp \
            github.com/containernetworking/plugins/plugins/meta/portmap
        go_install "$tmp" "$COREDNS_VERSION" github.com/coredns/coredns
        # kubeadm and kubectl of the cluster's Kubernetes version, and etcd (this directory's go.mod pins them).
        cd "$HERE"
        local version_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
        version_flags+=" -X k8s.io/component-base/version.gitMajor=1"
        version_flags+=" -X k8s.io/component-base/version.gitMinor=34"
        version_flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
        version_flags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
        GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -ldflags="-s -w $version_flags" -o "$tmp/" \
            k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubectl
        GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
    ) || die "building kind's binaries failed (see the Go output above)"
    touch "$tmp/.complete"
    rm -rf "$TOOLS"
    mv "$tmp" "$TOOLS"
    log "binaries built in $((SECONDS - started)) s"
}

# ------------------------------------------------------------------------------------------ images

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

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

# base_image NAME: kind's images/base recipe on a debootstrap root, squashed into one layer as kind's is.
base_image() {
    local name="$1" context files
    files="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files"
    [ -d "$files" ] || (cd "$HERE" && go mod download sigs.k8s.io/kind@"$KIND_VERSION")
    [ -d "$files" ] || die "kind's base image files are not in the module cache ($files)"
    context="$(mktemp -d /tmp/harness-kind-base.XXXXXX)"
    cp -r "$files" "$context/files"
    chmod -R u+w "$context/files"
    mkdir -p "$context/bin/cni"
    cp "$TOOLS"/{containerd,ctr,containerd-shim-runc-v2,runc,crictl} "$context/bin/"
    cp "$TOOLS"/cni/* "$context/bin/cni/"
    # The pod sandbox and the pod network, as the header says.
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
    cat >"$context/Dockerfile" <<EOF
FROM $DEBIAN_BASE
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* && rm -f /kind/README.txt \\
    && DEBIAN_FRONTEND=noninteractive clean-install ${BASE_PACKAGES[*]} \\
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* \\
    && rm -f /etc/systemd/system/*.wants/* \\
    && rm -f /lib/systemd/system/local-fs.target.wants/* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \\
    && rm -f /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /usr/lib/systemd/systemd /sbin/init
RUN systemctl enable kubelet.service && systemctl enable containerd.service \\
    && systemctl enable undo-mount-hacks.service && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests
COPY bin/containerd bin/ctr bin/containerd-shim-runc-v2 bin/crictl /usr/local/bin/
COPY bin/runc /usr/local/sbin/runc
COPY bin/cni/ /opt/cni/bin/
RUN ctr oci spec \\
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
        | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
    && containerd --version && runc --version && crictl --version
EOF
    DOCKER_BUILDKIT=0 docker build --network host -t "$name-layers" "$context" >"$context.log" 2>&1 || {
        echo "error: kind-image: building the base image failed; last lines of $context.log:" >&2
        tail -n 30 "$context.log" >&2
        exit 1
    }
    rm -rf "$context" "$context.log"
    local id
    id="$(docker create "$name-layers")"
    docker export "$id" | docker import - "$name-squashed" >/dev/null
    docker rm -f "$id" >/dev/null
    docker image rm "$name-layers" >/dev/null
    # Metadata only (docker import takes no STOPSIGNAL): systemd is told it runs in a container, and stops on
    # SIGRTMIN+3 (SIGTERM would make it re-execute itself).
    printf '%s\n' "FROM $name-squashed" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
        'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' |
        DOCKER_BUILDKIT=0 docker build -q -t "$name" - >/dev/null
    docker image rm "$name-squashed" >/dev/null
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
    DOCKER_BUILDKIT=0 docker build --network host -t "$name" "$context" >"$context.log" 2>&1 || {
        echo "error: kind-image: building $name failed; last lines of $context.log:" >&2
        tail -n 30 "$context.log" >&2
        exit 1
    }
    rm -rf "$context" "$context.log"
}

# node_image NAME BASE CLUSTER_BIN: kind's node-image build (pkg/build/nodeimage) on BASE.
node_image() {
    local name="$1" base="$2" cluster_bin="$3" id images=() image dir
    dir="$(mktemp -d /tmp/harness-kind-images.XXXXXX)"
    local registry="registry.k8s.io"
    for component in kube-apiserver kube-controller-manager kube-scheduler; do
        scratch_image "$registry/$component:$K8S_VERSION" "[\"/usr/local/bin/$component\"]" \
            "$cluster_bin/$component:usr/local/bin/$component"
        images+=("$registry/$component:$K8S_VERSION")
    done
    kube_proxy_image "$registry/kube-proxy:$K8S_VERSION" "$cluster_bin/kube-proxy"
    images+=("$registry/kube-proxy:$K8S_VERSION")
    scratch_image "$registry/etcd:$ETCD_TAG" '["/usr/local/bin/etcd"]' "$TOOLS/etcd:usr/local/bin/etcd"
    scratch_image "$registry/coredns/coredns:$COREDNS_VERSION" '["/coredns"]' "$TOOLS/coredns:coredns"
    scratch_image "$PAUSE_IMAGE" '["/pause"]' "$cluster_bin/pause:pause"
    scratch_image "$registry/metrics-server/metrics-server:$METRICS_SERVER_TAG" '["/metrics-server"]' \
        "$cluster_bin/metrics-server:metrics-server"
    images+=("$registry/etcd:$ETCD_TAG" "$registry/coredns/coredns:$COREDNS_VERSION" "$PAUSE_IMAGE"
        "$registry/metrics-server/metrics-server:$METRICS_SERVER_TAG")

    id="$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$base" infinity)"
    # shellcheck disable=SC2064  # the id is known now
    trap "docker rm -f -v $id >/dev/null 2>&1; rm -rf '$dir'" EXIT
    for binary in "$TOOLS/kubeadm" "$cluster_bin/kubelet" "$TOOLS/kubectl"; do
        docker cp "$binary" "$id:/usr/bin/$(basename "$binary")"
        docker exec "$id" chmod +x "/usr/bin/$(basename "$binary")"
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
    docker exec "$id" bash -c 'for i in 0 1 2 3 4 5; do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done; ctr info >/dev/null'
    docker save "${images[@]}" | docker exec -i "$id" ctr --namespace=k8s.io images import \
        --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
    docker exec "$id" pkill containerd
    docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$id" "$name" >/dev/null
    docker rm -f -v "$id" >/dev/null
    trap - EXIT
    rm -rf "$dir"
    docker image rm "${images[@]}" >/dev/null
}

build() {
    tools
    command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "Docker is needed (run: bash scripts/docker-setup.sh)"
    image_exists "$DEBIAN_BASE" || die "no $DEBIAN_BASE image (run: bash scripts/docker-setup.sh)"
    local cluster_bin key
    # The test cluster's binaries, built once under its lock (a build in progress elsewhere is waited for).
    cluster_bin="$(bash "$ROOT/scripts/cluster/cluster.sh" build | tail -n 1)"
    key="$(image_key)-$(basename "$(dirname "$cluster_bin")" | sed "s/^$K8S_VERSION-//")"
    NODE_IMAGE="harness.local/kind-node:$K8S_VERSION-$key"
    if ! image_exists "$NODE_IMAGE"; then
        local started=$SECONDS base="harness.local/kind-base:$key"
        log "building $NODE_IMAGE (kind's base-image and node-image recipes, offline)"
        image_exists "$base" || base_image "$base"
        log "base image $base ready ($((SECONDS - started)) s)"
        node_image "$NODE_IMAGE" "$base" "$cluster_bin"
        docker image rm "$base" >/dev/null
        log "node image built in $((SECONDS - started)) s"
    fi
}

case "${1:-}" in
build)
    build
    echo "$TOOLS/kind"
    echo "$NODE_IMAGE"
    ;;
kind)
    tools
    echo "$TOOLS/kind"
    ;;
*)
    echo "usage: $0 build|kind" >&2
    exit 2
    ;;
esac
