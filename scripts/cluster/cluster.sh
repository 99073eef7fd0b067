#!/bin/bash
# A real single-node Kubernetes cluster on this machine, for `make test` and `make loadtest TARGET=cluster`.
#
#   cluster.sh up      build the binaries once (cached), start every component, wait until the node is Ready
#   cluster.sh down    stop everything; leave no process, mount, network namespace, cgroup, iptables rule or key,
#                      and put back the sysctls `up` changed
#   cluster.sh status  one line per component: running or not
#   cluster.sh load-image IMAGE   copy a Docker image into the cluster's containerd (no registry needed)
#
# Components, all host processes listening on 127.0.0.1 only: etcd, kube-apiserver, kube-controller-manager
# (with its real Deployment, ReplicaSet and HorizontalPodAutoscaler controllers), kube-scheduler, kubelet
# with its own containerd and Debian's runc, kube-proxy (iptables), metrics-server (metrics.k8s.io), Debian's
# Prometheus scraping the pods, prometheus-adapter serving custom.metrics.k8s.io from it, and Debian's
# docker-registry on 127.0.0.1:$REGISTRY_PORT (htpasswd user `harness`, password in $STATE/registry/auth/password),
# the one registry the node may pull from. The node is
# called `localhost`, so the API server, metrics-server and Prometheus reach the kubelet on 127.0.0.1. Pods
# live in network namespaces on a bridge of this machine (POD_CIDR) and have no default route; a FORWARD rule
# drops anything from the bridge to another interface, so no packet of the cluster leaves the machine.
#
# Kubernetes, etcd, metrics-server and prometheus-adapter are built from their Go modules
# (scripts/cluster/go.mod pins them) into $HARNESS_CLUSTER_CACHE, keyed by go.mod and go.sum, so a second
# `make cluster`, also in another clone, takes seconds. The cluster's state is machine-wide
# (/var/lib/harness-cluster, /run/harness-cluster): one cluster per machine, shared by every clone; the
# admin kubeconfig is copied to <repo>/.cluster/kubeconfig, and kubectl of the same version is linked as
# <repo>/.cluster/bin/kubectl.
#
# Sourced (`source cluster.sh`), it only defines its functions: tests/cluster run `network` and `down` in a
# network, mount and PID namespace of their own to check what `down` puts back on the host.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
K8S_VERSION="v1.34.4"
CACHE_ROOT="${HARNESS_CLUSTER_CACHE:-$HOME/.cache/harness-cluster}"
STATE="${HARNESS_CLUSTER_STATE:-/var/lib/harness-cluster}"
RUN="${HARNESS_CLUSTER_RUN:-/run/harness-cluster}"
KUBECONFIG_OUT="${HARNESS_CLUSTER_KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
TOOLS_OUT="$(dirname "$KUBECONFIG_OUT")/bin"
NODE="localhost"
POD_CIDR="10.244.0.0/24"
POD_GATEWAY="10.244.0.1"
SERVICE_CIDR="10.96.0.0/24"
BRIDGE="harness0"
APISERVER_PORT=16443
ETCD_PORT=12379
ETCD_PEER_PORT=12380
METRICS_SERVER_PORT=14443
ADAPTER_PORT=14444
PROMETHEUS_PORT=19090
REGISTRY_PORT=15000
REGISTRY_USER=harness
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
# What `up` changes on the host beyond its own files, recorded before the first change so `down` puts it back.
HOST_RECORD="$STATE/host"
HOST_SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables)
PAUSE_IMAGE="harness.local/pause:1"
# Components in start order; `down` stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
    metrics-server pod-discovery prometheus prometheus-adapter registry)

log() { echo "cluster: $*" >&2; }
die() {
    echo "error: cluster: $*" >&2
    exit 1
}

# ------------------------------------------------------------------------------------------ build

bin_dir() {
    local key
    key="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/adapter/go.mod" "$HERE/adapter/go.sum" "$HERE"/*/main.go |
        sha256sum | cut -c1-12)"
    echo "$CACHE_ROOT/$K8S_VERSION-$key/bin"
}

build() {
    local bin
    bin="$(bin_dir)"
    if [ -x "$bin/kubelet" ] && [ -f "$bin/.complete" ]; then
        BIN="$bin"
        return
    fi
    command -v go >/dev/null || die "Go is needed to build the cluster binaries (go not on PATH)"
    log "building Kubernetes $K8S_VERSION, etcd, metrics-server and prometheus-adapter into $bin"
    log "(once per go.mod; about 15-25 min on 2 cores with a cold Go cache)"
    local started=$SECONDS tmp
    tmp="$bin.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (
        cd "$HERE"
        export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
        go build -trimpath -ldflags="-s -w $(version_flags)" -o "$tmp/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler \
            k8s.io/kubernetes/cmd/kubelet \
            k8s.io/kubernetes/cmd/kube-proxy \
            sigs.k8s.io/metrics-server/cmd/metrics-server
        go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
        go build -trimpath -ldflags="-s -w" -o "$tmp/pause" ./pause
        go build -trimpath -ldflags="-s -w" -o "$tmp/pod-discovery" ./pod-discovery
        cd adapter
        go build -trimpath -ldflags="-s -w" -o "$tmp/prometheus-adapter" sigs.k8s.io/prometheus-adapter/cmd/adapter
    ) || die "building the cluster binaries failed (see the Go output above)"
    touch "$tmp/.complete"
    rm -rf "$bin"
    mv "$tmp" "$bin"
    log "binaries built in $((SECONDS - started)) s"
    BIN="$bin"
}

version_flags() {
    echo "-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1" \
        "-X k8s.io/component-base/version.gitMinor=34 -X k8s.io/component-base/version.gitTreeState=clean" \
        "-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
}

build_kubectl() {
    # kubectl of the cluster's version, for the steps of docs/cluster.md; built beside the other binaries once.
    # Its extra modules are resolved in a copy of go.mod and go.sum, so the binaries' cache key stays the same.
    [ -x "$BIN/kubectl" ] && return
    local modfile
    modfile="$(mktemp -d)"
    cp "$HERE/go.mod" "$HERE/go.sum" "$modfile/"
    (
        cd "$HERE"
        export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
        go build -modfile "$modfile/go.mod" -trimpath -ldflags="-s -w $(version_flags)" -o "$BIN/kubectl.tmp" \
            k8s.io/kubernetes/cmd/kubectl
    ) || die "building kubectl failed (see the Go output above)"
    rm -rf "$modfile"
    mv "$BIN/kubectl.tmp" "$BIN/kubectl"
}

# ------------------------------------------------------------------------------------------ helpers

pid_file() { echo "$RUN/pids/$1.pid"; }

running() {
    # Alive, not a zombie (killed, not yet reaped), and still this component (not a reused pid).
    local pid state command
    pid="$(cat "$(pid_file "$1")" 2>/dev/null)" || return 1
    [ -n "$pid" ] || return 1
    state="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
    command="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "${state:0:1}" != Z ] && [[ "$command" == *"$1"* ]]
}

# start NAME COMMAND...: run a component in its own session, its output in $STATE/logs/NAME.log, without
# the up/down lock (fd 9), which would otherwise stay held as long as the component lives.
start() {
    local name="$1"
    shift
    if running "$name"; then
        return
    fi
    mkdir -p "$RUN/pids" "$STATE/logs"
    setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file "$name")"
}

wait_for() {
    local what="$1" timeout_s="$2"
    shift 2
    local deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$what not ready after ${timeout_s} s"
            return 1
        fi
        sleep 0.5
    done
}

fail_with_log() {
    local name="$1"
    echo "error: cluster: $name did not come up; last lines of $STATE/logs/$name.log:" >&2
    tail -n 25 "$STATE/logs/$name.log" >&2 || true
    exit 1
}


api() {
    # api METHOD PATH [BODY]: one call to the API server as the cluster admin.
    local method="$1" path="$2" body="${3:-}"
    local args=(-sS --fail-with-body -X "$method" --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt"
        --key "$STATE/pki/admin.key" "https://127.0.0.1:$APISERVER_PORT$path")
    if [ -n "$body" ]; then
        args+=(-H "Content-Type: application/apply-patch+yaml" --data-binary "$body")
    fi
    curl "${args[@]}"
}

# apply MANIFEST_YAML: server-side apply of one object (path computed by the caller).
apply() {
    local path="$1" body="$2"
    api PATCH "$path?fieldManager=harness-cluster&force=true" "$body" >/dev/null
}

# ------------------------------------------------------------------------------------------ PKI

cert() {
    # cert NAME SUBJECT [SANS]: a key and a certificate signed by CA (or CA_NAME), 10 years.
    local name="$1" subject="$2" sans="${3:-}" ca="${CA_NAME:-ca}"
    local dir="$STATE/pki"
    [ -f "$dir/$name.crt" ] && return
    openssl genrsa -out "$dir/$name.key" 2048 2>/dev/null
    openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
    local ext="$dir/$name.ext"
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$sans" ]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$sans"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr" "$ext"
}

ca() {
    local name="$1" subject="$2" dir="$STATE/pki"
    [ -f "$dir/$name.crt" ] && return
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -subj "$subject" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$dir/$name.crt" 2>/dev/null
}

kubeconfig() {
    # kubeconfig NAME CERT: a kubeconfig for the client certificate CERT.
    local name="$1" cert="$2" pki="$STATE/pki"
    cat >"$STATE/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: harness
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$pki/$cert.crt")
    client-key-data: $(base64 -w0 "$pki/$cert.key")
contexts:
- name: harness
  context: {cluster: harness, user: $cert}
current-context: harness
EOF
    chmod 600 "$STATE/$name.kubeconfig"
}

pki() {
    mkdir -p "$STATE/pki"
    chmod 700 "$STATE/pki"
    ca ca "/CN=harness-cluster-ca"
    CA_NAME=front-proxy-ca ca front-proxy-ca "/CN=harness-front-proxy-ca"
    cert apiserver "/CN=kube-apiserver" \
        "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.96.0.1"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    cert admin "/O=system:masters/CN=harness-admin"
    cert controller-manager "/CN=system:kube-controller-manager"
    cert scheduler "/CN=system:kube-scheduler"
    cert kubelet-client "/O=system:nodes/CN=system:node:$NODE"
    cert kubelet-serving "/CN=$NODE" "DNS:$NODE,IP:127.0.0.1"
    cert kube-proxy "/CN=system:kube-proxy"
    # The metrics APIs' servers act for the API server's clients: delegated authn/authz and node reads.
    cert addons "/O=system:masters/CN=harness-metrics-addons"
    CA_NAME=front-proxy-ca cert front-proxy-client "/CN=front-proxy-client"
    [ -f "$STATE/pki/sa.key" ] || {
        openssl genrsa -out "$STATE/pki/sa.key" 2048 2>/dev/null
        openssl rsa -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" 2>/dev/null
    }
    kubeconfig admin admin
    kubeconfig controller-manager controller-manager
    kubeconfig scheduler scheduler
    kubeconfig kubelet kubelet-client
    kubeconfig kube-proxy kube-proxy
    kubeconfig addons addons
}

# ------------------------------------------------------------------------------------------ components

network() {
    mkdir -p "$STATE/cni" "$STATE/cni-ipam"
    # No default route in pods: they reach the bridge, Services (via kube-proxy on the host) and nothing else.
    cat >"$STATE/cni/10-harness.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "harness",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni-ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    echo 1 >/proc/sys/net/ipv4/ip_forward
    [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
    # Nothing from the pod bridge is forwarded to any other interface: no packet leaves the machine.
    iptables -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null ||
        iptables -I FORWARD 1 -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
        iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
}

# kube_chains: "COMMAND TABLE CHAIN" for every KUBE-* chain of iptables and ip6tables (the kubelet's KUBE-FIREWALL
# and canaries, kube-proxy's service chains).
kube_chains() {
    local command
    for command in iptables ip6tables; do
        command -v "$command-save" >/dev/null || continue
        "$command-save" 2>/dev/null |
            awk -v command="$command" '/^\*/ {table = substr($0, 2)} /^:KUBE-/ {print command, table, substr($1, 2)}'
    done
}

# record_host: before the first change of a fresh `up`, the sysctls it sets and the KUBE-* chains already there.
# A later `up` of the running cluster keeps the first record.
record_host() {
    local sysctl file
    mkdir -p "$HOST_RECORD"
    for sysctl in "${HOST_SYSCTLS[@]}"; do
        file="$HOST_RECORD/${sysctl##*/}"
        if [ ! -f "$file" ] && [ -e "/proc/sys/$sysctl" ]; then
            cat "/proc/sys/$sysctl" >"$file"
        fi
    done
    [ -f "$HOST_RECORD/iptables-chains" ] || kube_chains >"$HOST_RECORD/iptables-chains"
}

# restore_host: the recorded sysctl values back (without a record, e.g. a cluster started by an older version of
# this script, they are left as they are); every KUBE-* chain that was not there before, with the rules of other
# chains that jump to it; the cluster's FORWARD rules.
restore_host() {
    local sysctl file command table rule leftovers chains chain
    for sysctl in "${HOST_SYSCTLS[@]}"; do
        file="$HOST_RECORD/${sysctl##*/}"
        if [ -f "$file" ] && [ -e "/proc/sys/$sysctl" ]; then
            cat "$file" >"/proc/sys/$sysctl"
        fi
    done
    leftovers="$(kube_chains | grep -vxF -f <(cat "$HOST_RECORD/iptables-chains" 2>/dev/null; echo) || true)"
    while read -r command table; do
        [ -n "$command" ] || continue
        chains=" $(awk -v c="$command" -v t="$table" '$1 == c && $2 == t {printf "%s ", $3}' <<<"$leftovers")"
        "$command-save" -t "$table" | awk -v chains="$chains" '/^-A / {
            target = ""
            for (i = 3; i < NF; i++) if ($i == "-j" || $i == "-g") target = $(i + 1)
            if (index(chains, " " target " ") && !index(chains, " " $2 " ")) print substr($0, 4)
        }' | while IFS= read -r rule; do
            eval "$command -t $table -D $rule" 2>/dev/null || log "could not delete rule '$rule' ($command, $table)"
        done
        for chain in $chains; do "$command" -t "$table" -F "$chain" 2>/dev/null || true; done
        for chain in $chains; do "$command" -t "$table" -X "$chain" 2>/dev/null || log "could not delete chain $chain"; done
    done < <(awk '{print $1, $2}' <<<"$leftovers" | sort -u)
    iptables -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null || true
    iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
    rm -rf "$HOST_RECORD"
}

start_containerd() {
    mkdir -p "$RUN/containerd" "$STATE/containerd"
    cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine drops CAP_SYS_RESOURCE even for root: a negative oom_score_adj (the sandbox's -998) fails,
  # so scores are kept at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$STATE/registries"
EOF
    # No registry outside this machine may be tried from here: a pull of an image that was not loaded goes to a
    # closed loopback port and fails at once (ErrImagePull), for Docker Hub and for every other registry but the
    # cluster's own (start_registry), which is served over plain HTTP on 127.0.0.1.
    local registry server
    for registry in _default docker.io "127.0.0.1:$REGISTRY_PORT"; do
        server="http://127.0.0.1:9"
        [ "$registry" = "127.0.0.1:$REGISTRY_PORT" ] && server="http://$registry"
        mkdir -p "$STATE/registries/$registry"
        cat >"$STATE/registries/$registry/hosts.toml" <<EOF
server = "$server"
[host."$server"]
  capabilities = ["pull", "resolve"]
EOF
    done
    start containerd containerd --config "$STATE/containerd.toml"
    wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version || fail_with_log containerd
}

pause_image() {
    local images
    images="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q)"
    if grep -qx "$PAUSE_IMAGE" <<<"$images"; then
        return
    fi
    command -v docker >/dev/null && docker info >/dev/null 2>&1 ||
        die "Docker is needed once to package the pod sandbox image (run: bash scripts/docker-setup.sh)"
    local dir
    dir="$(mktemp -d)"
    cp "$BIN/pause" "$dir/pause"
    tar -C "$dir" -c pause | docker import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
    rm -rf "$dir"
    load_image "$PAUSE_IMAGE"
    docker image rm "$PAUSE_IMAGE" >/dev/null
}

load_image() {
    local image="$1"
    docker image inspect "$image" >/dev/null 2>&1 || die "no Docker image $image to load (build it first)"
    docker save "$image" | ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false - >/dev/null
}

start_etcd() {
    mkdir -p "$STATE/etcd"
    chmod 700 "$STATE/etcd"
    start etcd "$BIN/etcd" --name harness --data-dir "$STATE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "harness=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
        --quota-backend-bytes 1073741824 --log-level warn
    wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" || fail_with_log etcd
}

start_apiserver() {
    local pki="$STATE/pki"
    start kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
        --endpoint-reconciler-type none \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types Hostname \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
        --feature-gates HPAConfigurableTolerance=true \
        --profiling=false --v 1
    wait_for kube-apiserver 90 api GET /readyz || fail_with_log kube-apiserver
}

start_controller_manager() {
    local pki="$STATE/pki" kc="$STATE/controller-manager.kubeconfig"
    # The HPA controller keeps its production timings (15 s sync); the scenarios are written for them.
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
        --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --use-service-account-credentials=true --cluster-name harness \
        --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route' \
        --feature-gates HPAConfigurableTolerance=true \
        --profiling=false --v 1
}

start_scheduler() {
    local kc="$STATE/scheduler.kubeconfig"
    start kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
        --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v 1
}

start_kubelet() {
    local pki="$STATE/pki"
    mkdir -p "$STATE/kubelet"
    cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
resolvConf: ""
clusterDomain: cluster.local
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%"}
# Seconds matter to the scale tests: the pod status reaches the API server at once, not after 10 s.
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
EOF
    start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
        --hostname-override "$NODE" --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --v 1
}

start_kube_proxy() {
    cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
nodePortAddresses: ["127.0.0.1/32"]
conntrack: {maxPerCore: 0}
EOF
    start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml" --v 1
}

start_metrics_server() {
    local kc="$STATE/addons.kubeconfig"
    mkdir -p "$STATE/metrics-server"
    start metrics-server "$BIN/metrics-server" --secure-port "$METRICS_SERVER_PORT" --bind-address 127.0.0.1 \
        --cert-dir "$STATE/metrics-server" --kubeconfig "$kc" --authentication-kubeconfig "$kc" \
        --authorization-kubeconfig "$kc" --kubelet-insecure-tls --kubelet-preferred-address-types Hostname \
        --metric-resolution 15s
}

start_prometheus() {
    mkdir -p "$STATE/prometheus"
    # Debian's Prometheus has no Kubernetes service discovery: pod-discovery writes the annotated pods
    # (prometheus.io/scrape=true) with their namespace and pod labels, which the adapter maps to objects.
    # Five seconds: the HPA reads the adapter every 15 s.
    start pod-discovery "$BIN/pod-discovery" --kubeconfig "$STATE/addons.kubeconfig" \
        --output "$STATE/prometheus-targets.json"
    cat >"$STATE/prometheus.yml" <<EOF
global: {scrape_interval: 5s, scrape_timeout: 4s}
scrape_configs:
- job_name: pods
  file_sd_configs:
  - files: [$STATE/prometheus-targets.json]
    refresh_interval: 2s
EOF
    start prometheus prometheus --config.file "$STATE/prometheus.yml" --storage.tsdb.path "$STATE/prometheus" \
        --storage.tsdb.retention.time 1d --web.listen-address "127.0.0.1:$PROMETHEUS_PORT" --log.level warn
    wait_for prometheus 30 curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" || fail_with_log prometheus
}

start_adapter() {
    local kc="$STATE/addons.kubeconfig" config="$STATE/prometheus-adapter.yaml" rules
    mkdir -p "$STATE/prometheus-adapter"
    # Every BentoML series of a pod becomes a Pods custom metric of the same name (per pod, summed over
    # endpoints), e.g. bentoml_service_request_in_progress, which loadtests/autoscale.yaml scales on; an LLM
    # engine's vLLM gauges (vllm:num_requests_waiting ...) become vllm_num_requests_waiting ..., the names the
    # harness's local autoscaler gives them too.
    rules="$(
        cat <<'EOF'
rules:
- seriesQuery: '{__name__=~"bentoml_.*",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name: {matches: "^(.*)$", as: "$1"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: '{__name__=~"vllm:.*",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name: {matches: "^vllm:(.*)$", as: "vllm_$1"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
EOF
    )"
    # The adapter reads its rules once: a cluster brought up with other rules gets its adapter restarted.
    if [ "$(cat "$config" 2>/dev/null)" != "$rules" ]; then
        stop_component prometheus-adapter
        printf '%s\n' "$rules" >"$config"
    fi
    start prometheus-adapter "$BIN/prometheus-adapter" --secure-port "$ADAPTER_PORT" --bind-address 127.0.0.1 \
        --cert-dir "$STATE/prometheus-adapter" --lister-kubeconfig "$kc" --authentication-kubeconfig "$kc" \
        --authorization-kubeconfig "$kc" --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT/" \
        --metrics-relist-interval 10s --config "$STATE/prometheus-adapter.yaml" --v 1
}

register_metrics_apis() {
    # Aggregated APIs served by host processes: an ExternalName Service `localhost` is how the API server's
    # aggregator reaches a 127.0.0.1 port (Endpoints may not hold loopback addresses).
    local name port group version
    for spec in "metrics-server $METRICS_SERVER_PORT metrics.k8s.io v1beta1" \
        "prometheus-adapter $ADAPTER_PORT custom.metrics.k8s.io v1beta1" \
        "prometheus-adapter $ADAPTER_PORT custom.metrics.k8s.io v1beta2"; do
        read -r name port group version <<<"$spec"
        apply "/api/v1/namespaces/kube-system/services/$name" "apiVersion: v1
kind: Service
metadata: {name: $name, namespace: kube-system}
spec: {type: ExternalName, externalName: localhost, ports: [{name: https, port: $port}]}"
        apply "/apis/apiregistration.k8s.io/v1/apiservices/$version.$group" "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: $version.$group}
spec:
  group: $group
  version: $version
  service: {name: $name, namespace: kube-system, port: $port}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100"
    done
}

start_registry() {
    # Debian's docker-registry with htpasswd authentication: pushes need the user's Docker credentials and pulls
    # an image pull secret, as on a team's registry. Plain HTTP on loopback (Docker treats 127.0.0.0/8 as an
    # insecure registry by default). The password is made once; bcrypt through Python's crypt (libxcrypt).
    local dir="$STATE/registry"
    mkdir -p "$dir/auth" "$dir/storage"
    chmod 700 "$dir/auth"
    if [ ! -s "$dir/auth/password" ] || [ ! -s "$dir/auth/htpasswd" ]; then
        (umask 077 && openssl rand -hex 16 >"$dir/auth/password")
        python3 -W ignore -c '
import crypt, sys
password = open(sys.argv[2]).read().strip()
print(sys.argv[1] + ":" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
            "$REGISTRY_USER" "$dir/auth/password" >"$dir/auth/htpasswd"
    fi
    cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
auth:
  htpasswd: {realm: harness-cluster, path: $dir/auth/htpasswd}
EOF
    if ! running registry; then
        # Blobs of images deleted since (tests delete what they pushed) go while nothing can push.
        docker-registry garbage-collect --delete-untagged "$dir/config.yml" >>"$STATE/logs/registry.log" 2>&1 || true
    fi
    start registry docker-registry serve "$dir/config.yml"
    wait_for registry 30 curl -s -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" || fail_with_log registry
}

node_ready() {
    api GET "/api/v1/nodes/$NODE" | python3 -c '
import json, sys
node = json.load(sys.stdin)
ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
sys.exit(0 if ready and ready[0]["status"] == "True" else 1)'
}

api_available() {
    api GET "/apis/apiregistration.k8s.io/v1/apiservices/$1" | python3 -c '
import json, sys
conditions = json.load(sys.stdin).get("status", {}).get("conditions", [])
sys.exit(0 if any(c["type"] == "Available" and c["status"] == "True" for c in conditions) else 1)'
}

up() {
    [ "$(id -u)" -eq 0 ] || die "the cluster needs root (containerd, kubelet, iptables)"
    for tool in containerd runc ctr iptables openssl curl prometheus docker-registry; do
        command -v "$tool" >/dev/null || die "$tool is missing; run: make system-packages"
    done
    [ -x /usr/lib/cni/bridge ] || die "CNI plugins are missing; run: make system-packages"
    build
    build_kubectl
    local started=$SECONDS name alive=0
    for name in "${COMPONENTS[@]}"; do
        if running "$name"; then alive=1; fi
    done
    if [ "$alive" -eq 0 ] && { [ -d "$RUN" ] || [ -d "$STATE/etcd" ]; }; then
        # Nothing runs, yet state is left: processes killed from outside (a machine's session ended). Their
        # mounts, network namespaces, pod IPs and etcd objects are stale; start from a clean slate.
        log "cleaning up what a killed cluster left behind"
        down
    fi
    mkdir -p "$STATE" "$RUN"
    chmod 700 "$STATE"
    if [ "$alive" -eq 0 ]; then
        record_host
    fi
    pki
    network
    start_containerd
    pause_image
    start_etcd
    start_apiserver
    start_controller_manager
    start_scheduler
    start_kubelet
    start_kube_proxy
    wait_for "node $NODE" 120 node_ready || fail_with_log kubelet
    start_metrics_server
    start_prometheus
    start_adapter
    register_metrics_apis
    wait_for metrics.k8s.io 90 api_available v1beta1.metrics.k8s.io || fail_with_log metrics-server
    wait_for custom.metrics.k8s.io 90 api_available v1beta1.custom.metrics.k8s.io || fail_with_log prometheus-adapter
    start_registry
    mkdir -p "$(dirname "$KUBECONFIG_OUT")" "$TOOLS_OUT"
    install -m 600 "$STATE/admin.kubeconfig" "$KUBECONFIG_OUT"
    ln -sf "$BIN/kubectl" "$TOOLS_OUT/kubectl"
    log "ready in $((SECONDS - started)) s: node $NODE, API https://127.0.0.1:$APISERVER_PORT," \
        "Prometheus http://127.0.0.1:$PROMETHEUS_PORT, registry 127.0.0.1:$REGISTRY_PORT; kubeconfig $KUBECONFIG_OUT"
}

# ------------------------------------------------------------------------------------------ down

stop_component() {
    local name="$1" pid
    pid="$(cat "$(pid_file "$name")" 2>/dev/null)" || return 0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$name")"
}

drain() {
    # Every pod deleted through the API while the kubelet still runs: stopping a sandbox also tears down its
    # network (CNI DEL: veth, IP) and its namespace.
    api GET /api/v1/pods 2>/dev/null | python3 -c '
import json, sys
for pod in json.load(sys.stdin)["items"]:
    print(pod["metadata"]["namespace"], pod["metadata"]["name"])' | while read -r namespace name; do
        api DELETE "/api/v1/namespaces/$namespace/pods/$name?gracePeriodSeconds=0" >/dev/null 2>&1 || true
    done
    wait_for "pods to stop" 60 no_tasks || true
}

no_tasks() { [ -z "$(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null)" ]; }

down() {
    BIN="$(bin_dir)"
    local i id
    if running kube-apiserver && running kubelet; then
        drain
    fi
    stop_component kubelet
    # What the kubelet did not stop (it was not running): kill the tasks and remove the containers.
    if [ -S "$CONTAINERD_SOCK" ]; then
        for id in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
            ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        done
        sleep 1
        for id in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
            ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete --force "$id" >/dev/null 2>&1 || true
            ctr --address "$CONTAINERD_SOCK" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
        done
    fi
    stop_component kube-proxy
    [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        stop_component "${COMPONENTS[$i]}"
    done
    # Shims of containers that outlived containerd, and anything else still holding the cluster's state.
    pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
    for name in "${COMPONENTS[@]}"; do
        pkill -KILL -f "^$BIN/$name " 2>/dev/null || true
    done
    # Mounts under the cluster's directories (rootfs overlays, shm, netns, kubelet volumes), deepest first.
    awk -v state="$STATE/" -v run="$RUN/" 'index($2, state) == 1 || index($2, run) == 1 {print $2}' /proc/mounts |
        sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    awk '$2 ~ "^/run/netns/cni-" {print $2}' /proc/mounts | xargs -r -n1 umount -l 2>/dev/null || true
    rm -f /run/netns/cni-* 2>/dev/null || true
    ip link delete "$BRIDGE" 2>/dev/null || true
    restore_host
    # The kubelet's cgroups (cgroup v1: one tree per controller; v2: one tree), deepest first.
    find /sys/fs/cgroup -depth -type d -name 'kubepods*' 2>/dev/null | while read -r dir; do
        find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    # Cluster data goes (etcd, pod volumes, every key and certificate, the kubeconfigs, the registry's password);
    # containerd's image store and the registry's images are kept for the next `up`.
    rm -rf "$RUN" "$STATE/etcd" "$STATE/kubelet" "$STATE/cni-ipam" "$STATE/prometheus" "$STATE/logs" \
        "$STATE/prometheus-targets.json" "$STATE/pki" "$STATE/metrics-server" "$STATE/prometheus-adapter" \
        "$STATE/registry/auth"
    rm -f "$STATE"/*.kubeconfig "$KUBECONFIG_OUT" "$TOOLS_OUT/kubectl"
    log "stopped"
}

status() {
    local name
    for name in "${COMPONENTS[@]}"; do
        if running "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
    done
}

# One `up` or `down` at a time on the machine (the state is machine-wide): two test processes that each
# need the cluster (pytest-xdist workers) wait for each other instead of starting components twice.
serialized() {
    mkdir -p "$(dirname "$STATE")"
    exec 9>"$STATE.lock"
    flock 9
    "$@"
}

# Sourced: the functions only.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    return 0
fi

case "${1:-}" in
up) serialized up ;;
down) serialized down ;;
status) status ;;
# Under the lock: a build under way (another clone's `up`) is waited for, never started twice.
build) serialized build && echo "$BIN" ;;
load-image)
    [ -n "${2:-}" ] || die "usage: cluster.sh load-image IMAGE"
    load_image "$2"
    ;;
*)
    echo "usage: $0 up|down|status|build|load-image IMAGE" >&2
    exit 2
    ;;
esac
