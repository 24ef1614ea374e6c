#!/usr/bin/env bash
# Install OpenSSH's server (and any extra Debian packages named as arguments) when missing.
# The integration tests start their own sshd on a loopback port; they never touch the system's.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
for program in "$@"; do
  command -v "$program" >/dev/null 2>&1 || need+=("$program")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-sshd: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 0
  fi
  echo "ensure-sshd: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# sshd refuses to start without its privilege-separation directory.
if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi
