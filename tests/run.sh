#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then static checks, then
# pytest (unit, property, loopback, syslog, packaging and, as root, the NAT lab).
# Usage: sudo bash tests/run.sh [pytest args...]
#        bash tests/run.sh --quick [pytest args...]
# --quick: the lane for a contributor without root: no apt, no NAT lab, no systemd container;
# the static checks, then the unit, loopback and packaging tests (a test whose tool is missing
# skips, unless CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi

# A python3 that is externally managed (PEP 668: Debian's own) gets no pip install: the project
# and its test tools go into a virtual environment that also sees Debian's packages.
externally_managed() {
  python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
}

# --- system packages (Debian/Ubuntu), only the missing ones -------------------------------------
if [ "$quick" = 0 ]; then
declare -A tools=(
  [kamailio]=kamailio [nft]=nftables [conntrack]=conntrack [ip]=iproute2 [sipp]=sip-tester
  [tshark]=tshark [rsyslogd]=rsyslog [busybox]=busybox [shellcheck]=shellcheck [lintian]=lintian
  [sipsak]=sipsak [systemd-analyze]=systemd [dpkg-deb]=dpkg [man]=man-db [groff]=groff-base
  [prometheus]=prometheus [promtool]=prometheus [prometheus-node-exporter]=prometheus-node-exporter
  [collectd]=collectd-core [sendmail]=msmtp-mta [baresip]=baresip-core [node]=nodejs
  [systemd-nspawn]=systemd-container [debootstrap]=debootstrap [nsenter]=util-linux
  [curl]=curl [wget]=wget  # the example webhook's two clients (tests/hooks)
  # the NAT lab's matrix of real SIP stacks (tests/lab/test_lab_stacks.py)
  [ejabberdctl]=ejabberd [linphonec]=linphone-cli [turnserver]=coturn [npm]=npm
)
missing=()
for tool in "${!tools[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
# Debian's own python3 needs PyYAML for the installed .deb check; the stack matrix needs
# ejabberd's SIP library and Perl's Net::SIP, which bring no command of their own
for package in python3-yaml erlang-p1-sip libnet-sip-perl; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# netifaces is optional at run time; tests/unit/test_netinfo.py compares it with the fallback
python3 -c 'import netifaces' >/dev/null 2>&1 || missing+=(python3-netifaces)
if externally_managed && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
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

# The services these packages bring are never started by the tests' host, only inside labs
# (ejabberd, coturn); a machine without policy-rc.d may have started them: stopped here.
if [ "$(id -u)" -eq 0 ]; then
  for service in ejabberd coturn; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$service" 2>/dev/null; then
      systemctl stop "$service" || true
    fi
  done
fi

# --- npm's sip for the stack matrix, pinned (keep in step with tests/lab/stacks.py) -----------
node_prefix=/var/cache/nat-keepalive-lab/node
node_sip=0.0.6
if [ "$(id -u)" -eq 0 ] && command -v npm >/dev/null 2>&1 &&
   ! grep -qs "\"version\": \"$node_sip\"" "$node_prefix/node_modules/sip/package.json"; then
  echo "installing: npm sip@$node_sip into $node_prefix"
  mkdir -p "$node_prefix"
  npm install --prefix "$node_prefix" --no-audit --no-fund --no-save --silent "sip@$node_sip"
fi

fi  # not --quick

# --- the project and its test dependencies --------------------------------------------------------
if externally_managed; then
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/nat-keepalive-tests-venv"
  python3 -m venv --system-site-packages "$venv"
  export PATH="$venv/bin:$PATH"  # python3, ruff, mypy, vermin and pytest from here on
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

# --- static checks --------------------------------------------------------------------------------
echo "== ruff"; ruff check agent tests && ruff format --check agent tests
echo "== mypy --strict"; mypy
echo "== vermin (Python 3.9)"; vermin -q -t=3.9- --no-tips --violations agent

# --- tests ----------------------------------------------------------------------------------------
echo "== pytest"
if [ "$quick" = 1 ] && [ $# -gt 0 ]; then
  exec python3 -m pytest -q -p no:cacheprovider tests/unit tests/loopback tests/packaging "$@"
fi
if [ $# -gt 0 ]; then
  exec python3 -m pytest -q -p no:cacheprovider "$@"
fi
# Most of the suite waits for real NAT timeouts and service timers, not for the CPU, so it runs
# as five pytest processes at once: the lab scenarios, the lab's long runs (lifetime discovery,
# injected faults), the matrix of real SIP stacks (its cells run in parallel inside it), the .deb
# under systemd in a Debian 12 container (tests/system; its first run also debootstraps the
# cached root file system) and everything else. Each one's output is shown
# in turn; one closing line sums them.
if [ "$quick" = 1 ]; then  # three streams, the loopback tests waiting on timers the longest
  streams=("tests/unit" "tests/loopback" "tests/packaging")
else
  streams=(
    "tests/lab/test_lab_scenarios.py tests/lab/test_lab_expiry.py tests/lab/test_lab_harness.py tests/lab/test_lab_prometheus.py"
    "tests/lab/test_lab_lifetime.py tests/reliability/test_lab_faults.py tests/reliability/test_nothing_lost.py"
    "tests/lab/test_lab_stacks.py tests/lab/test_lab_stun.py tests/lab/test_lab_responder.py tests/lab/test_lab_relay.py"
    "tests/system"
    "tests --ignore=tests/lab --ignore=tests/system --ignore=tests/reliability/test_lab_faults.py --ignore=tests/reliability/test_nothing_lost.py"
  )
fi
logs=()
pids=()
for spec in "${streams[@]}"; do
  log=$(mktemp)
  logs+=("$log")
  # shellcheck disable=SC2086  # each spec is a list of pytest arguments
  python3 -m pytest -q -p no:cacheprovider $spec >"$log" 2>&1 &
  pids+=($!)
done
trap 'rm -f "${logs[@]}"' EXIT
failed_streams=0
for i in "${!pids[@]}"; do
  code=0
  wait "${pids[$i]}" || code=$?
  echo "== pytest ${streams[$i]} (exit $code)"
  cat "${logs[$i]}"
  [ "$code" -eq 0 ] || failed_streams=$((failed_streams + 1))
done

# --- the .deb, installed for real with apt-get on this machine, then purged -----------------------
if [ "$(id -u)" -eq 0 ] && [ "$quick" = 0 ]; then
  echo "== .deb install check"
  sh packaging/deb/ci-install-check.sh
fi

total() {  # the sum of "N <word>" over every stream's pytest summary line
  grep -hE "^[0-9].* in [0-9.]+s" "${logs[@]}" | grep -oE "[0-9]+ $1" |
    awk '{ n += $1 } END { print n + 0 }'
}
echo "suite: $(total passed) passed, $(total failed) failed"
[ "$failed_streams" -eq 0 ]
