#!/usr/bin/env bash
# Install the Debian packages the tests need when they are missing: OpenSSH's server and nginx
# (the integration tests start their own sshd and nginx on loopback ports; they never touch
# the system's), Chromium (the status page's browser test), and any programs named as
# arguments (`make bench`: sshpass). `apt-get update` runs once, only when something is missing;
# packages are installed without starting their services.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
for program in "$@"; do
  command -v "$program" >/dev/null 2>&1 || need+=("$program")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-packages: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 0
  fi
  echo "ensure-packages: installing ${need[*]}" >&2
  apt-get update -qq
  # Debian's package is `nginx`; where a release only has the light flavour, that one.
  for i in "${!need[@]}"; do
    if [ "${need[$i]}" = nginx ] && ! apt-cache policy nginx | grep -q 'Candidate: [0-9]'; then
      need[$i]=nginx-light
    fi
  done
  # No service starts during the install (nginx would take port 80, sshd port 22): a
  # policy-rc.d that refuses, for as long as the install runs, unless the system has one.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# sshd refuses to start without its privilege-separation directory.
if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi
