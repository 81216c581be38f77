#!/bin/sh
# Builds nat-keepalive_<version>_all.deb for Debian 12+ and Raspberry Pi OS, from this checkout:
#
#     packaging/deb/build-deb.sh [OUTDIR]        (default OUTDIR: dist/)
#
# Needs only dpkg-deb and gzip (no debhelper, no pip): the package is the plain source of
# agent/natkeepalive under /usr/lib/python3/dist-packages, run by Debian's /usr/bin/python3 with
# python3-yaml from apt (PEP 668: nothing is pip-installed into the system Python).
# DEB_REVISION (default 1) is the Debian revision; SOURCE_DATE_EPOCH (default: the last commit's
# time) dates the changelog and every file, so two builds of one commit are identical.
# Prints the path of the .deb.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
outdir="${1:-$root/dist}"

package=nat-keepalive
maintainer="nat-keepalive maintainers <nat-keepalive@example.org>"
upstream="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/agent/natkeepalive/__init__.py")"
[ -n "$upstream" ] || { echo "build-deb.sh: no __version__ in agent/natkeepalive/__init__.py" >&2; exit 1; }
version="$upstream-${DEB_REVISION:-1}"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH

for tool in dpkg-deb gzip; do
	command -v "$tool" >/dev/null 2>&1 || { echo "build-deb.sh: $tool is required" >&2; exit 1; }
done
example="$root/agent/natkeepalive/config/example.yaml"
[ -f "$example" ] || { echo "build-deb.sh: $example is missing" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM
stage="$work/$package"
umask 022

# --- files ---------------------------------------------------------------------------------------
site="$stage/usr/lib/python3/dist-packages"
mkdir -p "$site" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/nat-keepalive" \
	"$stage/usr/share/doc/$package" "$stage/usr/share/man/man5" "$stage/usr/share/man/man8" \
	"$stage/DEBIAN"
# The package's sources only: no bytecode (py3compile makes it at install), no build leftovers.
(cd "$root/agent" && find natkeepalive -name __pycache__ -prune -o -type f \( -name '*.py' -o -name py.typed -o -name '*.yaml' \) -print) |
	while read -r file; do
		mkdir -p "$site/$(dirname "$file")"
		cp "$root/agent/$file" "$site/$file"
	done

install -m 0755 "$root/packaging/nat-keepalive.launcher" "$stage/usr/bin/nat-keepalive"

cp "$root/packaging/systemd/nat-keepalive.service" "$stage/lib/systemd/system/"
# The responder's unit: installed, never enabled (docs/responder.md)
cp "$root/packaging/systemd/nat-keepalive-responder.service" "$stage/lib/systemd/system/"
# Examples only, never enabled: hooks (executable, copied into place by the admin), alert rules,
# LuCI graphs
mkdir -p "$stage/usr/share/nat-keepalive/examples/hooks"
for file in "$root"/examples/hooks/*; do
	install -m 0755 "$file" "$stage/usr/share/nat-keepalive/examples/hooks/"
done
for folder in prometheus luci; do
	mkdir -p "$stage/usr/share/nat-keepalive/examples/$folder"
	for file in "$root/examples/$folder"/*; do
		install -m 0644 "$file" "$stage/usr/share/nat-keepalive/examples/$folder/"
	done
done
# The drop-in for a source_port below 1024 (installed by the admin, see the unit's comment)
mkdir -p "$stage/usr/share/nat-keepalive/examples/systemd"
install -m 0644 "$root/packaging/systemd/privileged-port.conf" \
	"$stage/usr/share/nat-keepalive/examples/systemd/"
cp "$example" "$stage/etc/nat-keepalive/config.yaml"
# the manual pages as packaging/man/build-man.py generated them from the docs
gzip -9n <"$root/packaging/man/nat-keepalive.8" >"$stage/usr/share/man/man8/nat-keepalive.8.gz"
gzip -9n <"$root/packaging/man/nat-keepalive.yaml.5" >"$stage/usr/share/man/man5/nat-keepalive.yaml.5.gz"
gzip -9n <"$root/CHANGELOG.md" >"$stage/usr/share/doc/$package/changelog.gz"

year="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)"
sed "s/^Copyright: YEAR /Copyright: $year /" >"$stage/usr/share/doc/$package/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nat-keepalive

Files: *
Copyright: YEAR nat-keepalive contributors
License: MIT

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
EOF

{
	echo "$package ($version) unstable; urgency=medium"
	echo
	echo "  * Built from the nat-keepalive repository by packaging/deb/build-deb.sh."
	echo "    Upstream changes: see changelog.gz."
	echo
	echo " -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/usr/share/doc/$package/changelog.Debian.gz"

# --- control -------------------------------------------------------------------------------------
echo /etc/nat-keepalive/config.yaml >"$stage/DEBIAN/conffiles"

cat >"$stage/DEBIAN/control" <<EOF
Package: $package
Version: $version
Architecture: all
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: python3 (>= 3.9), python3-yaml
Recommends: python3-netifaces
Section: net
Priority: optional
Description: keeps NAT bindings for SIP open with OPTIONS keepalives
 A small agent for routers and single-board computers behind NAT next to SIP
 phones or a PBX. For each configured binding it sends SIP OPTIONS requests
 from a fixed UDP source port to a SIP server, which keeps the NAT's UDP
 binding open so the server can reach the device. From the responses it
 learns the public address, reports when it changes and detects bindings
 that expired.
 .
 It runs as the hardened systemd service nat-keepalive.service (not enabled
 on installation: edit /etc/nat-keepalive/config.yaml first) and logs to the
 journal.
EOF

# Maintainer scripts in the shape debhelper generates (dh_installsystemd --no-enable,
# dh_python3): the unit is registered but not enabled; an upgrade restarts a running agent.
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e

if [ "$1" = "configure" ]; then
	if command -v py3compile >/dev/null 2>&1; then
		py3compile -p nat-keepalive
	fi
	for unit in nat-keepalive.service nat-keepalive-responder.service; do
		if command -v deb-systemd-helper >/dev/null 2>&1; then
			deb-systemd-helper unmask "$unit" >/dev/null || true
			deb-systemd-helper update-state "$unit" >/dev/null || true
		fi
	done
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			deb-systemd-invoke try-restart nat-keepalive.service \
				nat-keepalive-responder.service >/dev/null || true
		fi
	fi
fi

exit 0
EOF

cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e

if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
	deb-systemd-invoke stop nat-keepalive.service nat-keepalive-responder.service \
		>/dev/null || true
fi
if command -v py3clean >/dev/null 2>&1; then
	py3clean -p nat-keepalive
else
	find /usr/lib/python3/dist-packages/natkeepalive -name __pycache__ -type d -prune \
		-exec rm -rf {} + 2>/dev/null || true
fi

exit 0
EOF

cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
for unit in nat-keepalive.service nat-keepalive-responder.service; do
	if [ "$1" = "remove" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper mask "$unit" >/dev/null || true
	fi
	if [ "$1" = "purge" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge "$unit" >/dev/null || true
		deb-systemd-helper unmask "$unit" >/dev/null || true
	fi
done

exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
	xargs md5sum) >"$stage/DEBIAN/md5sums"

# --- build ---------------------------------------------------------------------------------------
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$outdir"
deb="$outdir/${package}_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
