#!/bin/bash
# Make Docker usable for the harness on a machine without a container registry; idempotent.
#   1. install docker.io and debootstrap (apt) when missing
#   2. start dockerd in the background when no daemon answers
#   3. build harness-base:bookworm (debootstrap + docker import) and harness-python:bookworm, once each
# Environment: HARNESS_CA_BUNDLE (default: /etc/ssl/certs/ca-certificates.crt) is given to pip in the
# Python image; HARNESS_DEBIAN_MIRROR replaces the mirror read from the apt sources (scripts/debian-mirror.sh);
# DOCKERD_LOG (default /var/log/dockerd.log); DOCKERD_WAIT_S (default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="harness-base:bookworm"
PYTHON_IMAGE="harness-python:bookworm"
SUITE="bookworm"
CA_BUNDLE="${HARNESS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKERD_WAIT_S="${DOCKERD_WAIT_S:-60}"

script_start_s=$SECONDS
step_start_s=$SECONDS
step() { step_start_s=$SECONDS; echo "docker-setup: $*" >&2; }
done_step() { echo "docker-setup: $* ($((SECONDS - step_start_s)) s)" >&2; }

# ---------------------------------------------------------------- 1. packages
step "checking Debian packages docker.io debootstrap"
bash "$ROOT/scripts/install-system-packages.sh" docker.io debootstrap
done_step "packages present"

# ---------------------------------------------------------------- 2. daemon
# Where the capability bounding set lacks some capability the kernel knows (a Firecracker guest here: no
# CAP_SYS_RESOURCE), runc refuses every privileged container, and kind's nodes are privileged. dockerd then runs
# scripts/docker/runc-bounded, which gives a container only capabilities a process here can hold.
RUNTIME_NAME="harness-runc"
RUNTIME_PATH="/usr/local/lib/harness/runc-bounded"
capability_set_is_reduced() {
    local last bounding
    last="$(cat /proc/sys/kernel/cap_last_cap)"
    bounding="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
    [ "$((16#$bounding))" -ne "$(((1 << (last + 1)) - 1))" ]
}
bounded_runtime=""
if capability_set_is_reduced && [ "$(id -u)" -eq 0 ]; then
    bounded_runtime="$RUNTIME_NAME"
    install -D -m 0755 "$ROOT/scripts/docker/runc-bounded" "$RUNTIME_PATH"
    mkdir -p /etc/docker
    # Merged into an existing daemon.json, whose other settings stay.
    /usr/bin/python3 - "$RUNTIME_NAME" "$RUNTIME_PATH" <<'PYTHON'
import json, os, sys
path, (name, runtime) = "/etc/docker/daemon.json", sys.argv[1:]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("runtimes", {})[name] = {"path": runtime}
config["default-runtime"] = name
json.dump(config, open(path, "w"), indent=2)
PYTHON
    if docker info >/dev/null 2>&1 && [ "$(docker info --format '{{.DefaultRuntime}}')" != "$RUNTIME_NAME" ]; then
        step "restarting dockerd to take the $RUNTIME_NAME runtime (its running containers stop)"
        pkill -TERM -x dockerd || true
        for _ in $(seq 1 60); do pgrep -x dockerd >/dev/null || break; sleep 1; done
        done_step "dockerd stopped"
    fi
fi

if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: no Docker daemon answers and this is not root; start dockerd or join the docker group" >&2
        exit 1
    fi
    step "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon outlives this script and the make process that ran it.
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    deadline_s=$((SECONDS + DOCKERD_WAIT_S))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline_s" ]; then
            echo "error: dockerd did not answer within ${DOCKERD_WAIT_S} s; last lines of $DOCKERD_LOG:" >&2
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 1
    done
    done_step "dockerd ready"
fi
if [ -n "$bounded_runtime" ] && [ "$(docker info --format '{{.DefaultRuntime}}')" != "$bounded_runtime" ]; then
    echo "error: dockerd does not run the $bounded_runtime runtime of /etc/docker/daemon.json: restart it" >&2
    exit 1
fi

# ---------------------------------------------------------------- 3. base images
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

if ! image_exists "$BASE_IMAGE"; then
    # The mirror this machine's apt uses (scripts/debian-mirror.sh says which, or that there is none).
    mirror="$(bash "$ROOT/scripts/debian-mirror.sh" "$SUITE")" || exit 1
    step "building $BASE_IMAGE with debootstrap from $mirror"
    rootfs="$(mktemp -d /tmp/harness-rootfs.XXXXXX)"
    # A failed debootstrap can leave /proc or /sys mounted inside the root; unmount before deleting it.
    remove_rootfs() {
        awk -v root="$rootfs/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
        rm -rf "$rootfs"
    }
    trap remove_rootfs EXIT
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        echo "error: debootstrap $SUITE from $mirror failed; last lines of $rootfs.log:" >&2
        tail -n 20 "$rootfs.log" >&2
        exit 1
    }
    # Documentation and message translations are a third of a minbase root file system.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    remove_rootfs
    rm -f "$rootfs.log"
    trap - EXIT
    done_step "$BASE_IMAGE built"
fi

if ! image_exists "$PYTHON_IMAGE"; then
    step "building $PYTHON_IMAGE"
    context="$(mktemp -d /tmp/harness-python-context.XXXXXX)"
    trap 'rm -rf "$context"' EXIT
    if [ -s "$CA_BUNDLE" ]; then cp "$CA_BUNDLE" "$context/ca-bundle.crt"; else : >"$context/ca-bundle.crt"; fi
    cp "$ROOT/dockerfiles/python-base.Dockerfile" "$context/Dockerfile"
    # The classic builder: Debian's docker.io ships no buildx plugin.
    DOCKER_BUILDKIT=0 docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$PYTHON_IMAGE" \
        "$context" >"$context.log" 2>&1 || {
        echo "error: building $PYTHON_IMAGE failed; last lines of the build log:" >&2
        tail -n 20 "$context.log" >&2
        exit 1
    }
    rm -rf "$context" "$context.log"
    trap - EXIT
    done_step "$PYTHON_IMAGE built"
fi

echo "docker-setup: ready: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E "^($BASE_IMAGE|$PYTHON_IMAGE) " | tr '\n' ' ')($((SECONDS - script_start_s)) s total)" >&2
