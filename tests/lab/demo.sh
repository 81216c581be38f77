#!/usr/bin/env bash
# The nat-keepalive demo from a fresh Debian-like machine: installs what is missing, then runs
# tests/lab/demo.py (a real Linux NAT in network namespaces, Kamailio, the agent; ~1 minute).
# Usage: sudo bash tests/lab/demo.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "the demo builds network namespaces: run it as root (sudo bash $0)" >&2
  exit 2
fi

# --- system packages, only the missing ones -------------------------------------------------------
declare -A tools=(
  [kamailio]=kamailio [nft]=nftables [conntrack]=conntrack [ip]=iproute2 [sipp]=sip-tester
  [rsyslogd]=rsyslog [python3]=python3
)
missing=()
for tool in "${!tools[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import yaml' 2>/dev/null; then
  missing+=(python3-yaml)  # the agent's only dependency
fi
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the project ----------------------------------------------------------------------------------
# demo.py runs the agent from this checkout (PYTHONPATH=agent) either way; installing it also gives
# the `nat-keepalive` command. A system Python that refuses pip (PEP 668) is fine.
if ! python3 -c 'import natkeepalive' 2>/dev/null; then
  if python3 -m pip install -q --disable-pip-version-check -e . 2>/dev/null; then
    echo "installed nat-keepalive from this checkout (pip install -e .)"
  else
    echo "pip install -e . not possible here; running the agent from the checkout"
  fi
fi

exec python3 tests/lab/demo.py "$@"
