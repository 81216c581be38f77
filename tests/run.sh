#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then static checks, then
# pytest (unit, property, loopback, syslog, packaging and, as root, the NAT lab).
# Usage: sudo bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages (Debian/Ubuntu), only the missing ones -------------------------------------
declare -A tools=(
  [kamailio]=kamailio [nft]=nftables [conntrack]=conntrack [ip]=iproute2 [sipp]=sip-tester
  [tshark]=tshark [rsyslogd]=rsyslog [busybox]=busybox [shellcheck]=shellcheck [lintian]=lintian
  [sipsak]=sipsak [systemd-analyze]=systemd [dpkg-deb]=dpkg
)
missing=()
for tool in "${!tools[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
# Debian's own python3 needs PyYAML for the installed .deb check
dpkg -s python3-yaml >/dev/null 2>&1 || missing+=(python3-yaml)
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not root: cannot install ${missing[*]} (tests that need them fail under CI=true)" >&2
  fi
fi

# --- the project and its test dependencies --------------------------------------------------------
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

# --- static checks --------------------------------------------------------------------------------
echo "== ruff"; ruff check agent tests
echo "== mypy --strict"; mypy
echo "== vermin (Python 3.9)"; vermin -q -t=3.9- --no-tips --violations agent

# --- tests ----------------------------------------------------------------------------------------
echo "== pytest"
if [ $# -gt 0 ]; then
  exec python3 -m pytest -q -p no:cacheprovider "$@"
fi
# The NAT lab mostly waits for real NAT timeouts, so it runs beside the rest of the suite: two
# pytest processes, the lab's output shown after the other's, and one closing line for both.
lab_log=$(mktemp)
rest_log=$(mktemp)
trap 'rm -f "$lab_log" "$rest_log"' EXIT
python3 -m pytest -q -p no:cacheprovider tests/lab >"$lab_log" 2>&1 &
lab_pid=$!
rest=0
python3 -m pytest -q -p no:cacheprovider --ignore=tests/lab 2>&1 | tee "$rest_log" || true
rest=${PIPESTATUS[0]}
lab=0
wait "$lab_pid" || lab=$?
echo "== pytest tests/lab (ran alongside)"
cat "$lab_log"

# --- the .deb, installed for real with apt-get on this machine, then purged -----------------------
if [ "$(id -u)" -eq 0 ]; then
  echo "== .deb install check"
  sh packaging/deb/ci-install-check.sh
fi

total() {  # the sum of "N <word>" over both pytest summary lines
  grep -hE "^[0-9].* in [0-9.]+s" "$rest_log" "$lab_log" | grep -oE "[0-9]+ $1" |
    awk '{ n += $1 } END { print n + 0 }'
}
echo "suite: $(total passed) passed, $(total failed) failed"
[ "$rest" -eq 0 ] && [ "$lab" -eq 0 ]
