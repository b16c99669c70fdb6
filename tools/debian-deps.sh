#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if this is Debian, we are root, and they
# are missing.  Anywhere else it says what is missing and carries on: the tests that need a
# package skip with a reason.
set -u
# dpdk-testpmd ships in dpdk-dev (Debian 12), the PMDs in dpdk.
pkgs=(clang llvm bpftool libbpf-dev dpdk dpdk-dev tshark)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "debian-deps: not root on Debian; missing ${missing[*]} (tests that need them will skip)" >&2
  exit 0
fi
echo "debian-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
