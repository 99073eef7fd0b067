"""scripts/cluster/cluster.sh's `down` puts the host back as `up` found it: the sysctls `up` set, every iptables
rule and chain the cluster made (its FORWARD rules, the kubelet's KUBE-FIREWALL hooked into INPUT and OUTPUT, the
canaries, kube-proxy's chains), and no key, certificate or kubeconfig left on disk.

The project's cluster is shared by every session on this machine, so its `down` is never run here. Instead the
script's own functions (`record_host`, `pki`, `network`, `down`) run in network, mount and PID namespaces of their
own: sysctls and iptables are the namespace's, the cluster's state directories, /run/netns and the cgroup tree are
empty tmpfs mounts, and `down`'s pkill sees only the sandbox's processes. What the kubelet and kube-proxy add when
they start is added by hand, as measured on this machine's cluster (`iptables-save`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / "scripts" / "cluster" / "cluster.sh"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux's unshare"),
]

# Runs inside the sandbox with STATE, RUN and KUBECONFIG_OUT under $WORK.
SANDBOX = r"""
set -euo pipefail
# Nothing of the machine's cluster is reachable from here: its state, its pods' network namespaces, its cgroups.
for dir in /var/lib/harness-cluster /run/harness-cluster /run/netns /sys/fs/cgroup; do
    if [ -d "$dir" ]; then mount -t tmpfs sandbox "$dir"; fi
done
export HARNESS_CLUSTER_STATE="$WORK/state" HARNESS_CLUSTER_RUN="$WORK/run"
export HARNESS_CLUSTER_KUBECONFIG="$WORK/out/kubeconfig"
snapshot() {
    cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true
    for command in iptables ip6tables; do
        "$command-save" | { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//'
    done
}
echo 0 >/proc/sys/net/ipv4/ip_forward
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then echo 0 >/proc/sys/net/bridge/bridge-nf-call-iptables; fi
# The machine's own rules and chains, which must stay: one plain rule, and a KUBE- chain that was there before.
iptables -A INPUT -s 192.0.2.7/32 -j ACCEPT
iptables -t nat -N KUBE-MACHINES-OWN
iptables -t nat -A OUTPUT -d 192.0.2.8/32 -j KUBE-MACHINES-OWN
snapshot >"$WORK/before"

source "$CLUSTER_SCRIPT"
mkdir -p "$STATE" "$RUN"
record_host
pki
network
# A second `up` of the running cluster keeps the first record.
record_host
ip link add "$BRIDGE" type bridge
# What the kubelet and kube-proxy add when they start (iptables-save of the machine's cluster).
iptables -N KUBE-FIREWALL
iptables -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" \
    -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
iptables -A INPUT -j KUBE-FIREWALL
iptables -A OUTPUT -j KUBE-FIREWALL
for table in mangle nat filter; do iptables -t "$table" -N KUBE-KUBELET-CANARY; done
ip6tables -t mangle -N KUBE-KUBELET-CANARY
iptables -t mangle -N KUBE-IPTABLES-HINT
iptables -N KUBE-PROXY-FIREWALL
iptables -A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" \
    -j KUBE-PROXY-FIREWALL
iptables -t nat -N KUBE-SERVICES
iptables -t nat -N KUBE-SVC-TEST
iptables -t nat -A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m tcp --dport 3000 -j KUBE-SVC-TEST
iptables -t nat -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
mkdir -p "$(dirname "$KUBECONFIG_OUT")"
install -m 600 "$STATE/admin.kubeconfig" "$KUBECONFIG_OUT"
snapshot >"$WORK/up"

down
snapshot >"$WORK/after"
find "$STATE" "$(dirname "$KUBECONFIG_OUT")" -type f | sort >"$WORK/files"
"""


def _without_empty_tables(snapshot: str) -> str:
    """The snapshot without tables that hold no rule and no chain of their own: iptables-nft creates a table when a
    chain is first made in it and never removes it, and a table of empty ACCEPT chains filters nothing."""
    kept: list[str] = []
    block: list[str] = []
    for line in snapshot.splitlines():
        if line.startswith("*"):
            block = [line]
        elif block:
            block.append(line)
            if line == "COMMIT":
                empty = all(
                    entry.startswith(("*", "COMMIT")) or (entry.startswith(":") and entry.split()[1] == "ACCEPT")
                    for entry in block
                )
                if not empty:
                    kept += block
                block = []
        else:
            kept.append(line)
    return "\n".join(kept)


def test_down_restores_sysctls_and_iptables_and_removes_every_key(tmp_path: Path) -> None:
    result = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "bash", "-c", SANDBOX],
        env={
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(Path.home()),
            "WORK": str(tmp_path),
            "CLUSTER_SCRIPT": str(CLUSTER_SCRIPT),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    before, up, after = (_without_empty_tables((tmp_path / name).read_text()) for name in ("before", "up", "after"))
    # `up` changed the host (otherwise the comparison below proves nothing) ...
    assert "KUBE-FIREWALL" in up and "-A FORWARD -i harness0 ! -o harness0 -j DROP" in up
    assert up.splitlines()[0] == "1"
    # ... and `down` put every sysctl, rule and chain back, keeping the machine's own.
    assert after == before
    assert "-A INPUT -s 192.0.2.7/32 -j ACCEPT" in after and ":KUBE-MACHINES-OWN" in after
    # No key, certificate or kubeconfig is left, nor the record of the host's state.
    files = (tmp_path / "files").read_text().split()
    assert not [name for name in files if name.endswith((".key", ".crt", ".kubeconfig", "kubeconfig", ".pub"))], files
    assert not (tmp_path / "state" / "host").exists()
