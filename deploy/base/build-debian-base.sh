#!/usr/bin/env bash
# Build a minimal Debian bookworm image with python3 from Debian's packages, for hosts
# that reach a Debian mirror but no container registry:
#   debootstrap (minbase + python3, python3-venv, ca-certificates) | docker import.
# Usage: deploy/base/build-debian-base.sh [IMAGE]   (default raftcache-base:bookworm)
# Then:  docker build --build-arg BASE_IMAGE=raftcache-base:bookworm -f deploy/Dockerfile ...
# Idempotent: does nothing when IMAGE exists already. Needs root (debootstrap, chroot).
#
# CA certificates the host added locally (/usr/local/share/ca-certificates, e.g. a
# TLS-inspecting egress proxy's) are installed into the image too, so that pip inside
# `docker build` trusts the same proxy as the host. Such an image is for this network only.
set -euo pipefail

image="${1:-raftcache-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${DEBIAN_SUITE:-bookworm}"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image exists"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
}

root="$(mktemp -d /tmp/raftcache-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite into $root (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 || {
    tail -20 "$root/debootstrap.log" >&2
    exit 1
}
shopt -s nullglob
extra=(/usr/local/share/ca-certificates/*.crt)
if [ ${#extra[@]} -gt 0 ]; then
    cp "${extra[@]}" "$root/rootfs/usr/local/share/ca-certificates/"
    # (Its rehash warns about the bundle file itself; that is harmless.)
    chroot "$root/rootfs" update-ca-certificates >/dev/null 2>&1 ||
        { echo "update-ca-certificates failed in the new base" >&2; exit 1; }
fi
# Nothing of apt's caches or docs is needed at run time.
rm -rf "$root"/rootfs/var/cache/apt/archives/*.deb "$root"/rootfs/var/lib/apt/lists/* \
    "$root"/rootfs/usr/share/doc/* "$root"/rootfs/usr/share/man/* "$root"/rootfs/usr/share/locale/*
tar -C "$root/rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["/usr/bin/python3"]' \
        --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$image" >/dev/null
echo "built base image $image"
