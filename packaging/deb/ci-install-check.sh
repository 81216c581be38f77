#!/bin/sh
# CI only (root, a Debian machine it may change): installs the .deb with apt, runs the installed
# command with Debian's /usr/bin/python3 and python3-yaml from apt, checks the installed unit,
# then purges the package and checks that nothing is left behind.
#
#     sudo packaging/deb/ci-install-check.sh [DEB]     (default: build one with build-deb.sh)
#
# It refuses to run when nat-keepalive is already installed, so it never removes a real install.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
package=nat-keepalive
tmp="$(mktemp -d)"
installed=0

fail() {
	echo "ci-install-check: $*" >&2
	exit 1
}

cleanup() {
	if [ "$installed" = 1 ]; then
		apt-get purge -y -q "$package" >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ "$(id -u)" = 0 ] || fail "must run as root (apt-get install)"
if dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'installed'; then
	fail "$package is already installed here: not touching it"
fi

if [ $# -ge 1 ]; then
	deb="$1"
else
	deb="$("$here/build-deb.sh" "$tmp")"
fi
case "$deb" in
	/*) ;;
	*) deb="$PWD/$deb" ;;  # apt-get treats only paths with a slash as files
esac
[ -f "$deb" ] || fail "no such file: $deb"

upstream="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/agent/natkeepalive/__init__.py")"

echo "== apt-get install $deb"
export DEBIAN_FRONTEND=noninteractive
installed=1
apt-get install -y -q --no-install-recommends "$deb"

echo "== the installed command"
head -n 1 /usr/bin/nat-keepalive | grep -qx '#!/usr/bin/python3 -I' || fail "unexpected interpreter line"
got="$(/usr/bin/nat-keepalive --version)"
[ "$got" = "nat-keepalive $upstream" ] || fail "--version printed '$got'"
echo "$got"
/usr/bin/nat-keepalive check -c /etc/nat-keepalive/config.yaml
/usr/bin/nat-keepalive check  # the default path is the installed file
dpkg-query -W -f '${Conffiles}\n' "$package" | grep -q '/etc/nat-keepalive/config.yaml' \
	|| fail "config.yaml is not a conffile"
[ -n "$(find /usr/lib/python3/dist-packages/natkeepalive -name '*.pyc' | head -n 1)" ] \
	|| fail "postinst did not byte-compile the module (py3compile)"

echo "== the installed unit"
if command -v systemd-analyze >/dev/null 2>&1; then
	out="$(systemd-analyze verify --man=no /lib/systemd/system/nat-keepalive.service 2>&1)" \
		|| fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
	systemd-analyze security --offline=true --no-pager /lib/systemd/system/nat-keepalive.service |
		tail -n 1
else
	echo "systemd-analyze not installed: unit not verified"
fi

echo "== apt-get purge $package"
apt-get purge -y -q "$package"
installed=0
if dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'installed'; then
	fail "still installed after purge"
fi
for path in /usr/bin/nat-keepalive /usr/lib/python3/dist-packages/natkeepalive \
	/etc/nat-keepalive /lib/systemd/system/nat-keepalive.service; do
	[ ! -e "$path" ] || fail "left behind after purge: $path"
done
echo "ci-install-check: OK"
