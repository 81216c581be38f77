#!/bin/bash
# shellcheck disable=SC2016,SC1003
# (SC2016: the scripts written into the chroot expand there, not here; SC1003: a tr set.)
# The OpenWrt package under OpenWrt's real components, built from their upstream sources on
# Debian: procd (not as PID 1: it serves the `service` ubus object), ubusd, uci, validate_data,
# logd/logread, jsonfilter, libubox's jshn, and the base-files scripts rc.common, functions.sh,
# procd.sh, network.sh, service.sh, uci.sh and reload_config, in a chroot whose /bin/sh is
# busybox ash. netifd is replaced by a stand-in for its ubus side (netifd-standin.c): the test
# sets each interface's status and sends netifd's events. Everything runs in fresh mount, PID and
# network namespaces: nothing reaches this machine's network, syslog or ubus, and every process
# ends with the run.
#
#   sudo bash tests/openwrt/real.sh --src DIR [--base-files DIR] [--work DIR]
#   sudo bash tests/openwrt/real.sh --fetch [--work DIR]      (needs git.openwrt.org, github.com)
#
# --src DIR: one git clone per project (libubox ubus uci udebug ubox jsonpath procd), checked out
#   at the commits below (another commit is used as it is and named in the output).
# --base-files DIR: the scripts, laid out as on a router (etc/rc.common, lib/functions.sh,
#   lib/functions/{procd,network,service}.sh, lib/config/uci.sh, sbin/reload_config); default
#   DIR/base-files.
# Prints one PASS/FAIL line per step and exits non-zero when any step fails. Not part of .ci/run:
# CI cannot fetch the sources. Needs: cmake gcc pkg-config libjson-c-dev busybox-static, and
# python3 with PyYAML (Debian's python3-yaml) to copy into the chroot.
set -u

# The commits the run last passed on (docs/openwrt.md). jsonpath: not its newest commit
# (e5a07f4, "main: defer processing until options are processed"), after which jsonfilter no
# longer reads JSON from its standard input, which procd.sh's procd_running and status use.
PINS="libubox=1aa36ee774c8db4d7a396903e0d2e1fb79ee8bf1
ubus=3cc98db1a422dcf560f2d6347fd410f17565a89d
uci=66127cd76c5d0bd46d5a90302cc6110f53a4e2f8
udebug=875e1a7af6ca9d86524d18169c3a79f4a1920053
ubox=6f78fa496bf36c55864a41e353df7d13f04b1077
jsonpath=afe72ad6414e0faedd3d780d9328e514b0083cae
procd=2c1834abae171261f2d9161e5a28c36cbcc394a4"
# base-files scripts: PATH-ON-ROUTER REPOSITORY COMMIT PATH-IN-REPOSITORY. rc.common (the one
# with extra_command) and uci.sh (package/system/uci) come from OpenWrt downstreams that track
# openwrt/openwrt: the versions at hand when this was written.
BASE_FILES="etc/rc.common immortalwrt/immortalwrt 3e49abbbf97f0c2542afbd8a6f979204d7f43244 package/base-files/files/etc/rc.common
lib/functions.sh openwrt/openwrt 01fa063ae9440273c6701708623a1928bb3ff657 package/base-files/files/lib/functions.sh
lib/functions/network.sh openwrt/openwrt 026271d03c28b3b88e64afe04bd3d236971cfaf2 package/base-files/files/lib/functions/network.sh
lib/functions/service.sh openwrt/openwrt 9963ae1d1c331b0f5e8cf7c6762b3c9bd126037d package/base-files/files/lib/functions/service.sh
lib/functions/procd.sh openwrt/openwrt 03eca6c5e85cad7ff20459d2f363c60c598d9825 package/system/procd/files/procd.sh
lib/config/uci.sh Lienol/openwrt 36141b743f7f0965f3f5e43e75c0f3350c05c7b9 package/system/uci/files/lib/config/uci.sh
sbin/reload_config openwrt/openwrt 16e4dffba7bce79c22ed28be1bb8ff60c84390f2 package/system/procd/files/reload_config"

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PKG="$REPO/openwrt/nat-keepalive"
NAME=nat-keepalive

die() {
	echo "real.sh: $*" >&2
	exit 2
}

# ================================================================================================
# outside the namespaces: sources, build, chroot layout
# ================================================================================================

outer() {
	local src="" base="" work="/var/tmp/nat-keepalive-openwrt-real" fetch=0 name commit pin
	while [ "$#" -gt 0 ]; do
		case "$1" in
			--src) src="$2"; shift 2 ;;
			--base-files) base="$2"; shift 2 ;;
			--work) work="$2"; shift 2 ;;
			--fetch) fetch=1; shift ;;
			*) die "unknown argument: $1" ;;
		esac
	done
	[ "$(id -u)" = 0 ] || die "run as root (namespaces, chroot)"
	mkdir -p "$work"
	work="$(cd "$work" && pwd)"
	if [ "$fetch" = 1 ]; then
		src="$work/src"
		fetch_sources "$src" || die "fetching the sources failed"
	fi
	[ -n "$src" ] || die "give --src DIR (clones) or --fetch"
	src="$(cd "$src" && pwd)"
	base="${base:-$src/base-files}"
	[ -f "$base/etc/rc.common" ] || die "no base-files scripts in $base"

	echo "sources:"
	for name in libubox ubus uci udebug ubox jsonpath procd; do
		commit="$(git -C "$src/$name" rev-parse HEAD 2>/dev/null)" || die "no clone $src/$name"
		pin="$(echo "$PINS" | sed -n "s/^$name=//p")"
		if [ "$commit" = "$pin" ]; then
			echo "  $name $commit"
		else
			echo "  $name $commit (not the pinned $pin)"
		fi
	done
	echo "  base-files scripts from $base"

	local stage="$work/stage" root="$work/root" t0
	t0=$(date +%s)
	if bash "$HERE/build.sh" "$src" "$stage" && build_standin "$stage"; then
		echo "PASS build: libubox ubus uci udebug ubox jsonpath procd, netifd stand-in ($(($(date +%s) - t0)) s)"
	else
		echo "FAIL build"
		exit 1
	fi
	if layout "$stage" "$base" "$root" >"$work/layout.log" 2>&1; then
		echo "PASS chroot: busybox ash as /bin/sh, base-files scripts, OpenWrt binaries, python3"
	else
		echo "FAIL chroot layout (see $work/layout.log)"
		tail -20 "$work/layout.log"
		exit 1
	fi
	exec unshare --mount --pid --net --fork --propagation private \
		bash "$0" --inner "$root" "$work" 2
}

fetch_sources() {
	local src="$1" line name pin path repo commit from
	mkdir -p "$src"
	for line in $PINS; do
		name="${line%%=*}"
		pin="${line#*=}"
		if [ ! -d "$src/$name/.git" ]; then
			git clone -q "https://git.openwrt.org/project/$name.git" "$src/$name" || return 1
		fi
		git -C "$src/$name" checkout -q "$pin" || return 1
	done
	echo "$BASE_FILES" | while read -r path repo commit from; do
		mkdir -p "$src/base-files/$(dirname "$path")"
		curl -fsSL "https://raw.githubusercontent.com/$repo/$commit/$from" \
			-o "$src/base-files/$path" || exit 1
	done
}

build_standin() {
	local stage="$1"
	gcc -O2 -Wall -o "$stage/usr/sbin/netifd-standin" "$HERE/netifd-standin.c" \
		-I"$stage/usr/include" -L"$stage/usr/lib" -Wl,-rpath-link,"$stage/usr/lib" \
		-lubus -lubox -lblobmsg_json -ljson-c
}

copy_libs() {  # ROOT STAGE FILE...: the shared libraries FILEs need, at their paths
	local root="$1" stage="$2" lib
	shift 2
	LD_LIBRARY_PATH="$stage/usr/lib" ldd "$@" 2>/dev/null | grep -o '/[^ ]*' | sort -u |
		while read -r lib; do
			case "$lib" in
				"$stage"/*) ;;
				*) [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; } ;;
			esac
		done
}

layout() {
	local stage="$1" base="$2" root="$3" bb applet f python pylib
	set -e
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib,usr/share,etc/config,etc/init.d,etc/rc.d}
	mkdir -p "$root"/{lib/functions,lib/config,proc,dev,tmp,root,overlay}
	ln -s tmp "$root/var"
	# busybox ash is /bin/sh, with its applets, as on a router.
	bb="$(command -v busybox)"
	file -L "$bb" 2>/dev/null | grep -q "statically linked" || bb=/bin/busybox
	cp "$bb" "$root/bin/busybox"
	for applet in $("$root/bin/busybox" --list); do
		case "$applet" in
			busybox | logread | syslogd | klogd | init | linuxrc) continue ;;
		esac
		ln -sf busybox "$root/bin/$applet"
	done
	# OpenWrt's busybox has `flock` and `lock`; Debian's has neither. util-linux's flock does what
	# procd.sh asks of it; `lock` (functions.sh around /etc/passwd edits) is a no-op here.
	cp /usr/bin/flock "$root/usr/bin/flock"
	printf '#!/bin/sh\nexit 0\n' >"$root/bin/lock"
	chmod 0755 "$root/bin/lock"
	# OpenWrt's components
	cp -a "$stage/usr/lib/." "$root/usr/lib/"
	rm -f "$root"/usr/lib/*.a
	cp -a "$stage/usr/share/libubox" "$root/usr/share/"
	for f in sbin/procd sbin/ubusd sbin/uci sbin/validate_data sbin/logd sbin/logread bin/ubus \
		usr/bin/jsonfilter usr/bin/jshn usr/sbin/netifd-standin; do
		install -D -m 0755 "$stage/$f" "$root/$f"
	done
	install -D -m 0755 "$stage/lib/libsetlbf.so" "$root/lib/libsetlbf.so"
	ln -sf ../../sbin/uci "$root/usr/bin/uci"
	ln -sf ../../bin/busybox "$root/usr/bin/md5sum"  # where OpenWrt's busybox has it
	copy_libs "$root" "$stage" "$stage"/sbin/* "$stage/bin/ubus" "$stage/usr/bin/jsonfilter" \
		"$stage/usr/bin/jshn" "$stage/usr/sbin/netifd-standin" "$root/usr/bin/flock"
	# base-files
	for f in etc/rc.common lib/functions.sh lib/functions/procd.sh lib/functions/network.sh \
		lib/functions/service.sh lib/config/uci.sh sbin/reload_config; do
		install -D -m 0755 "$base/$f" "$root/$f"
	done
	# python3 (Debian's; OpenWrt's is musl-built) with the stdlib and PyYAML
	python="$(readlink -f /usr/bin/python3)"
	pylib="$(dirname "$python")/../lib/$(basename "$python")"
	cp "$python" "$root/usr/bin/"
	ln -sf "$(basename "$python")" "$root/usr/bin/python3"
	mkdir -p "$root/usr/lib/$(basename "$python")" "$root/usr/lib/python3/dist-packages"
	tar -C "$pylib" --exclude=./test --exclude=./idlelib --exclude=./tkinter \
		--exclude=./ensurepip --exclude='*/__pycache__' -cf - . |
		tar -C "$root/usr/lib/$(basename "$python")" -xf -
	cp -a /usr/lib/python3/dist-packages/yaml "$root/usr/lib/python3/dist-packages/"
	copy_libs "$root" "$stage" "$python" "$pylib"/lib-dynload/*.so
	# the system: root, logd's and procd's directories
	printf 'root:x:0:0:root:/root:/bin/ash\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	printf 'root:::0:99999:7:::\n' >"$root/etc/shadow"
	mkdir -p "$root/usr/share/acl.d" "$root/usr/lib/opkg/info"
	# A router has other ACLs there (luci-base, rpcd, ...). Without any, ubusd's reload stops
	# at its empty glob and keeps the ACLs it had: the uninstall step would then see the
	# package's ACL survive.
	printf '{\n\t"user": "nobody",\n\t"send": [ "nobody.*" ]\n}\n' >"$root/usr/share/acl.d/00-router.json"
	set +e
}

# ================================================================================================
# inside the namespaces
# ================================================================================================

ROOT="" WORK="" FAILED=0 STEPS=0 LOGDIR=""

r() {  # run in the chroot as root, with a router's environment
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$ROOT" "$@"
}

nk_ids() {  # NK_UID, NK_GID: the package's user, from the chroot's /etc/passwd
	NK_UID="$(sed -n "s/^$NAME:x:\([0-9]*\):.*/\1/p" "$ROOT/etc/passwd")"
	NK_GID="$(sed -n "s/^$NAME:x:[0-9]*:\([0-9]*\):.*/\1/p" "$ROOT/etc/passwd")"
	[ -n "$NK_UID" ]
}

u() {  # ENV=VALUE...: run CMD (an array) in the chroot as the package's user
	nk_ids
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/run "$@" \
		chroot --userspec="$NK_UID:$NK_GID" "$ROOT" "${CMD[@]}"
}

rsh() {  # a shell command line in the chroot
	r /bin/sh -c "$1"
}

wait_until() {  # SECONDS COMMAND...: true as soon as COMMAND succeeds
	local end=$(($(date +%s) + $1))
	shift
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.2
	done
}

step() {  # DESCRIPTION FUNCTION: one PASS/FAIL line
	local what="$1" log
	shift
	STEPS=$((STEPS + 1))
	log="$LOGDIR/$(printf '%02d' "$STEPS").log"
	# not in a condition, nor in a && or || list: there bash would ignore set -e
	( set -eE; trap 'echo "failed: $BASH_COMMAND"' ERR; "$@" ) >"$log" 2>&1
	# shellcheck disable=SC2181
	if [ "$?" = 0 ]; then
		echo "PASS $what"
	else
		echo "FAIL $what"
		sed 's/^/    | /' "$log" | tail -25
		FAILED=$((FAILED + 1))
	fi
	[ "$STEPS" != "${REAL_SH_STOP_AFTER:-}" ] || exit 1
}

expect() {  # DESCRIPTION COMMAND...: fail the step with DESCRIPTION unless COMMAND succeeds
	local what="$1"
	shift
	if ! "$@"; then
		echo "expected: $what"
		return 1
	fi
}

agent_pid() {  # the running instance's PID, from procd
	r ubus call service list "{\"name\":\"$NAME\"}" | r jsonfilter -e "@['$NAME'].instances.instance1.pid"
}

running() {
	[ "$(r ubus call service list "{\"name\":\"$NAME\"}" |
		r jsonfilter -e "@['$NAME'].instances.instance1.running")" = true ]
}

log_has() {  # PATTERN: logd holds a line matching the extended regular expression
	r logread | grep -Eq "$1"
}

log_count() {
	r logread | grep -Ec "$1" || true
}

uci_do() {  # uci commands, one per argument, then commit
	local cmd
	for cmd in "$@"; do
		rsh "uci -q $cmd" || { echo "uci $cmd failed"; return 1; }
	done
	r uci commit "$NAME"
}

netifd_set() {  # IFACE up|down [UPTIME L3_DEVICE]: the stand-in's status of IFACE
	local iface="$1" dev=eth0
	if [ "$2" = up ]; then
		printf '{"up":true,"pending":false,"available":true,"uptime":%s,"l3_device":"%s","device":"%s","proto":"%s"}\n' \
			"$3" "$4" "$dev" "$5" >"$ROOT/tmp/netifd/$iface.json"
	else
		printf '{"up":false,"pending":false,"available":true,"device":"%s","proto":"%s"}\n' \
			"$dev" "$3" >"$ROOT/tmp/netifd/$iface.json"
	fi
}

netifd_event() {  # interface.update|interface.down IFACE: what netifd sends procd
	r ubus call service event "{\"type\":\"$1\",\"data\":{\"interface\":\"$2\"}}"
}

ifstate_is() {  # IFACE TEXT: the init script has recorded this state of IFACE
	[ "$(cat "$ROOT/tmp/run/nat-keepalive/ifstate.$1" 2>/dev/null)" = "$2" ]
}

rendered() {
	cat "$ROOT/tmp/etc/nat-keepalive/config.yaml"
}

inner() {
	ROOT="$1" WORK="$2"
	LOGDIR="$WORK/logs"
	rm -rf "$LOGDIR"
	mkdir -p "$LOGDIR"
	# the router's RAM: /tmp (and /var), /dev; its /proc
	mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
	mount -t tmpfs -o mode=0755 tmpfs "$ROOT/dev"
	mknod -m 666 "$ROOT/dev/null" c 1 3
	mknod -m 666 "$ROOT/dev/zero" c 1 5
	mknod -m 666 "$ROOT/dev/random" c 1 8
	mknod -m 666 "$ROOT/dev/urandom" c 1 9
	mount -t proc proc "$ROOT/proc"
	mkdir -p "$ROOT/tmp/run" "$ROOT/tmp/lock" "$ROOT/tmp/state" "$ROOT/tmp/etc" "$ROOT/tmp/netifd"
	ip link set lo up
	# WAN devices for the interface events: an Ethernet port and a PPP link (a tun device)
	ip link add eth0 type veth peer name eth0-peer
	ip link set eth0 up
	ip tuntap add pppoe-wan mode tun
	ip link set pppoe-wan up

	export ROOT WORK LOGDIR NAME REPO PKG HERE
	export -f r u rsh nk_ids agent_pid running log_has log_count rendered probe_lines ifstate_is
	local t0
	t0=$(date +%s)
	run_steps
	echo "$STEPS steps, $FAILED failed, $(($(date +%s) - t0)) s"
	[ "$FAILED" = 0 ]
}

# --- the steps ------------------------------------------------------------------------------------

s_daemons() {
	r /sbin/ubusd &
	wait_until 5 r ubus list
	r /sbin/logd -S 64 &
	wait_until 5 bash -c "r ubus list | grep -qx log"
	r /sbin/procd &
	wait_until 5 bash -c "r ubus list | grep -qx service"
	netifd_set wan up 100 eth0 dhcp
	netifd_set wan6 down dhcpv6
	netifd_set lan up 5000 br-lan static
	r /usr/sbin/netifd-standin /tmp/netifd wan wan6 lan &
	wait_until 5 bash -c "r ubus list | grep -qx network.interface.wan"
	# a SIP server that answers OPTIONS, on 127.0.0.1:5060 of this network namespace
	PYTHONPATH="$REPO:$REPO/agent" python3 -c '
import time
from tests.support.responder import SipResponder
with SipResponder("127.0.0.1", 5060):
    while True:
        time.sleep(3600)' &
	wait_until 5 bash -c "ss -uln | grep -q 127.0.0.1:5060"
	# as /etc/init.d/boot does: the checksums later reload_config runs compare with
	printf "config system\n\toption hostname 'OpenWrt'\n" >"$ROOT/etc/config/system"
	r /sbin/reload_config
	r ubus list | grep -E '^(service|log|network\.interface\.)'
}

install_files() {  # as opkg lays out the package (Makefile: Py3Package/nat-keepalive/install)
	local files="$PKG/files"
	mkdir -p "$ROOT/usr/lib/python3/dist-packages"
	cp -a "$REPO/agent/natkeepalive" "$ROOT/usr/lib/python3/dist-packages/"
	find "$ROOT/usr/lib/python3/dist-packages/natkeepalive" -name __pycache__ -prune -exec rm -rf {} +
	install -D -m 0755 "$files/nat-keepalive.launcher" "$ROOT/usr/bin/nat-keepalive"
	install -D -m 0755 "$files/nat-keepalive.init" "$ROOT/etc/init.d/nat-keepalive"
	install -D -m 0644 "$files/nat-keepalive.config" "$ROOT/etc/config/nat-keepalive"
	mkdir -p "$ROOT/etc/nat-keepalive/events.d"
	ln -sf /var/etc/nat-keepalive/config.yaml "$ROOT/etc/nat-keepalive/config.yaml"
	install -D -m 0755 "$files/nat-keepalive.hook" "$ROOT/usr/libexec/nat-keepalive/hook"
	install -D -m 0644 "$files/nat-keepalive.acl.json" "$ROOT/usr/share/acl.d/nat-keepalive.json"
	install -D -m 0644 "$files/nat-keepalive.upgrade" "$ROOT/lib/upgrade/keep.d/nat-keepalive"
	# opkg's bookkeeping, as OpenWrt's build writes it (include/package-pack.mk)
	local info="$ROOT/usr/lib/opkg/info"
	printf 'Package: nat-keepalive\nVersion: 0.1.0-r1\nRequire-User: nat-keepalive:nat-keepalive\n' \
		>"$info/$NAME.control"
	(cd "$ROOT" && find usr/bin/nat-keepalive etc/init.d/nat-keepalive etc/config/nat-keepalive \
		etc/nat-keepalive usr/libexec/nat-keepalive usr/share/acl.d/nat-keepalive.json \
		lib/upgrade/keep.d/nat-keepalive usr/lib/python3/dist-packages/natkeepalive \
		\( -type f -o -type l \) | sed 's|^|/|') >"$info/$NAME.list"
	printf '#!/bin/sh\n[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n' \
		>"$info/$NAME.postinst"
	printf '#!/bin/sh\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_prerm $0 $@\n' \
		>"$info/$NAME.prerm"
	package_script postinst >"$info/$NAME.postinst-pkg"
	package_script postrm >"$info/$NAME.postrm"
	chmod 0755 "$info/$NAME.postinst" "$info/$NAME.prerm" "$info/$NAME.postrm"
	# an events.d script of the user's, and a root listener on ubus, to see the hook's work
	printf '#!/bin/sh\necho "$EVENT $BINDING" >>/tmp/events.d.log\n' \
		>"$ROOT/etc/nat-keepalive/events.d/50-record"
	chmod 0755 "$ROOT/etc/nat-keepalive/events.d/50-record"
}

package_script() {  # postinst|postrm: Package/nat-keepalive/KIND of the Makefile ($$ -> $)
	sed -n "/^define Package\/nat-keepalive\/$1\$/,/^endef\$/p" "$PKG/Makefile" |
		sed '1d;$d' | sed 's/\$\$/$/g'
}

hook_as_user() {  # EVENT BINDING: the hook, run as the agent would run it
	CMD=(/usr/libexec/nat-keepalive/hook "$1")
	u EVENT="$1" BINDING="$2" OLD=198.51.100.7:5062 NEW=198.51.100.9:5062 CAUSE=test
}

s_control_denied() {
	install_files
	# the user as default_postinst makes it, but ubusd was not told of the new ACL
	rsh ". /lib/functions.sh; pkgname=$NAME add_group_and_user $NAME"
	nk_ids
	grep "^$NAME:" "$ROOT/etc/passwd" "$ROOT/etc/group"
	CMD=(ubus send nat-keepalive.test '{}')
	if u 2>"$LOGDIR/denied.txt"; then
		echo "ubus send succeeded before ubusd re-read its ACLs"
		return 1
	fi
	grep -i "denied" "$LOGDIR/denied.txt"
}

s_postinst() {
	local out
	out="$(r env IPKG_INSTROOT= /usr/lib/opkg/info/$NAME.postinst configure 2>&1)"
	echo "$out"
	expect "the user exists once" [ "$(grep -c "^$NAME:" "$ROOT/etc/passwd")" = 1 ]
	expect "enabled at boot" [ -L "$ROOT/etc/rc.d/S95nat-keepalive" ]
	expect "procd has the service" bash -c "r ubus call service list | grep -q '\"$NAME\"'"
	expect "nothing to run with the shipped config" log_has "nothing to keep alive"
}

s_hook_after_install() {
	r ubus listen "nat-keepalive.*" >"$LOGDIR/listen.txt" 2>&1 &
	sleep 0.5
	hook_as_user binding-changed provider
	expect "the root listener saw the event" \
		wait_until 5 grep -q '"nat-keepalive.binding-changed"' "$LOGDIR/listen.txt"
	cat "$LOGDIR/listen.txt"
	expect "events.d ran" grep -qx "binding-changed provider" "$ROOT/tmp/events.d.log"
}

s_configure() {
	# an anonymous section, as LuCI and `uci add` make them
	uci_do "add $NAME binding" "set $NAME.@binding[-1].name=provider" \
		"set $NAME.@binding[-1].server=127.0.0.1:5060" \
		"set $NAME.@binding[-1].source_port=5062" "set $NAME.@binding[-1].interval=4" \
		"set $NAME.@binding[-1].bind=127.0.0.1" "set $NAME.@binding[-1].inbound_check=0"
	r uci show "$NAME"
	# what the config file's header says; reload_config would not see the file yet: its
	# checksums (from boot) do not list a package installed since.
	r /etc/init.d/nat-keepalive reload
	expect "procd started the agent" wait_until 15 running || {
		r ubus call service list "{\"name\":\"$NAME\"}" | head -20
		r ubus call service list "{\"name\":\"$NAME\"}" | r jsonfilter -e "@['$NAME'].instances.instance1.running"
		echo "rc=$?"
		return 1
	}
	r reload_config
	rendered
	expect "the anonymous section rendered under its name" bash -c "rendered | grep -q \"name: 'provider'\""
}

s_status() {
	r /etc/init.d/nat-keepalive status | tee "$LOGDIR/status.txt"
	grep -qx running "$LOGDIR/status.txt"
	wait_until 15 bash -c "r nat-keepalive status 2>&1 | grep -q reachable"
	r nat-keepalive status
}

s_logread() {
	wait_until 10 log_has "nat-keepalive.*event=started"
	wait_until 10 log_has "nat-keepalive.*event=binding-learned binding=provider"
	r logread -e nat-keepalive | tail -20
}

s_user() {
	local pid
	nk_ids
	pid="$(agent_pid)"
	grep -E '^(Uid|Gid|NoNewPrivs|CapEff)' "$ROOT/proc/$pid/status" | tee "$LOGDIR/proc.txt"
	expect "runs as $NAME" grep -Eq "^Uid:\s+$NK_UID\s+$NK_UID\s+$NK_UID\s+$NK_UID" "$LOGDIR/proc.txt"
	expect "no capabilities" grep -Eq "^CapEff:\s+0+$" "$LOGDIR/proc.txt"
	# what procd does without ujail: no_new_privs is not set, so the package does not ask for it
	expect "NoNewPrivs: 0" grep -Eq "^NoNewPrivs:\s+0$" "$LOGDIR/proc.txt"
	expect "procd was not asked for no_new_privs" \
		sh -c "! r ubus call service list '{\"name\":\"$NAME\",\"verbose\":true}' | grep -q no_new_privs"
}

s_agent_hook() {
	expect "events.d saw the agent's reachable" \
		wait_until 15 grep -q "^reachable provider" "$ROOT/tmp/events.d.log"
	expect "the listener saw it on ubus" \
		wait_until 5 grep -q '"nat-keepalive.reachable"' "$LOGDIR/listen.txt"
}

s_validate() {
	r ubus call service validate "{\"package\":\"$NAME\"}" | tee "$LOGDIR/validate.json"
	[ "$(r jsonfilter -s "$(cat "$LOGDIR/validate.json")" -e "@['$NAME'].agent.log_level")" != "" ]
	[ "$(r jsonfilter -s "$(cat "$LOGDIR/validate.json")" -e "@['$NAME'].binding.source_port")" = "range(1,65535)" ]
}

s_triggers() {
	r ubus call service list "{\"name\":\"$NAME\",\"verbose\":true}" >"$LOGDIR/service.json"
	r jsonfilter -s "$(cat "$LOGDIR/service.json")" -e "@['$NAME'].triggers[*]" |
		tr -d ' \n\\' | sed 's/\]\[/]\n[/g' | tee "$LOGDIR/triggers.txt"
	echo
	grep -q '^\["interface\.\*",\["if",\["eq","interface","wan"\],\["run_script","/etc/init.d/nat-keepalive","ifevent","wan"\]\],1000\]$' "$LOGDIR/triggers.txt"
	grep -q '"interface","wan6"' "$LOGDIR/triggers.txt"
	grep -q '^\["config\.change",' "$LOGDIR/triggers.txt"
}

s_bad_value() {
	local pid
	pid="$(agent_pid)"
	uci_do "set $NAME.@binding[0].source_port=70000"
	if r /etc/init.d/nat-keepalive reload 2>"$LOGDIR/bad.txt"; then
		echo "reload accepted a bad port"
		return 1
	fi
	cat "$LOGDIR/bad.txt"
	grep -q "nat-keepalive.@binding\[0\].source_port='70000'" "$LOGDIR/bad.txt"
	log_has "source_port='70000'"
	expect "the agent kept running" [ "$(agent_pid)" = "$pid" ]
	uci_do "set $NAME.@binding[0].source_port=5062"
	r /etc/init.d/nat-keepalive reload
	expect "same process after the fix" [ "$(agent_pid)" = "$pid" ]
}

s_log_level() {
	local pid
	pid="$(agent_pid)"
	expect "no debug lines yet" [ "$(log_count 'event=probe-sent')" = 0 ]
	uci_do "set $NAME.main.log_level=debug"
	r reload_config
	expect "debug lines after reload_config" wait_until 15 log_has 'event=probe-sent'
	expect "same process" [ "$(agent_pid)" = "$pid" ]
	uci_do "set $NAME.main.log_level=info"
	r reload_config
	wait_until 10 bash -c "[ \$(r logread | grep -c 'event=reloaded') -ge 2 ]"
}

s_hook_event() {
	local pid
	pid="$(agent_pid)"
	uci_do "add_list $NAME.main.hook_event=binding-chnged"
	if r /etc/init.d/nat-keepalive reload 2>"$LOGDIR/hookev.txt"; then
		echo "reload accepted an unknown event"
		return 1
	fi
	grep "hook_event='binding-chnged'" "$LOGDIR/hookev.txt"
	expect "the agent kept running" [ "$(agent_pid)" = "$pid" ]
	uci_do "del_list $NAME.main.hook_event=binding-chnged"
	r /etc/init.d/nat-keepalive reload
}

s_respawn() {
	local pid
	pid="$(agent_pid)"
	kill -9 "$pid"
	expect "procd started a new process" \
		wait_until 20 bash -c "p=\$(agent_pid); [ -n \"\$p\" ] && [ \"\$p\" != $pid ] && kill -0 \$p"
	wait_until 5 running
}

s_low_port() {
	local pid
	nk_ids
	uci_do "add $NAME binding" "set $NAME.@binding[-1].name=low" \
		"set $NAME.@binding[-1].server=127.0.0.1:5060" "set $NAME.@binding[-1].source_port=506" \
		"set $NAME.@binding[-1].bind=127.0.0.1" "set $NAME.@binding[-1].inbound_check=0"
	r /etc/init.d/nat-keepalive reload
	expect "rendered to start as root" bash -c "rendered | grep -q 'run-as: root'"
	wait_until 15 bash -c "r nat-keepalive status 2>&1 | grep -q '506'"
	wait_until 15 log_has "event=binding-learned binding=low"
	pid="$(agent_pid)"
	grep -E '^(Uid|CapEff)' "$ROOT/proc/$pid/status" | tee "$LOGDIR/low.txt"
	expect "the agent dropped to $NAME after binding 506" \
		grep -Eq "^Uid:\s+$NK_UID\s+$NK_UID\s+$NK_UID\s+$NK_UID" "$LOGDIR/low.txt"
	uci_do "delete $NAME.@binding[-1]"
	r /etc/init.d/nat-keepalive reload
	expect "back to starting as the user" bash -c "rendered | grep -q 'run-as: user'"
	wait_until 15 running
}

s_unnamed() {
	uci_do "add $NAME binding" "set $NAME.@binding[-1].server=127.0.0.1:5060" \
		"set $NAME.@binding[-1].source_port=5070"
	if r /etc/init.d/nat-keepalive reload 2>"$LOGDIR/unnamed.txt"; then
		return 1
	fi
	grep "nat-keepalive.@binding\[1\]: an unnamed section needs option name" "$LOGDIR/unnamed.txt"
	uci_do "delete $NAME.@binding[-1]"
	r /etc/init.d/nat-keepalive reload
}

# A binding on the WAN interface: its device comes from netifd's status of `wan`.
s_wan_binding() {
	uci_do "add $NAME binding" "set $NAME.@binding[-1].name=wanside" \
		"set $NAME.@binding[-1].server=192.0.2.1:5060" \
		"set $NAME.@binding[-1].source_port=5064" "set $NAME.@binding[-1].interface=wan" \
		"set $NAME.@binding[-1].inbound_check=0"
	r /etc/init.d/nat-keepalive reload
	wait_until 15 running
	expect "wan's device eth0 rendered" bash -c "rendered | grep -q \"interface: 'eth0'\""
	wait_until 10 log_has "event=reloaded added=1"
	agent_pid >"$WORK/pid.events"
	expect "the state at start recorded" ifstate_is wan "1 100 eth0"
}

s_emulation_truth() {
	# PROCD_DEBUG: procd.sh prints each message it sends (json_dump) on stderr
	rsh "PROCD_DEBUG=1 /etc/init.d/nat-keepalive start" 2>"$LOGDIR/debug.txt" >/dev/null
	grep '"instances"' "$LOGDIR/debug.txt" | tail -1 >"$LOGDIR/real-message.json"
	[ -s "$LOGDIR/real-message.json" ]
	(cd "$REPO" && PYTHONPATH="$REPO:$REPO/agent" python3 "$HERE/compare_message.py" \
		"$ROOT/etc/config/$NAME" "$ROOT/tmp/netifd" "$LOGDIR/real-message.json")
	expect "same process" [ "$(agent_pid)" = "$(cat "$WORK/pid.events")" ]
}

probe_lines() {
	log_count "nat-keepalive: interface wan is up"
}

s_if_update_no_change() {
	local before
	before="$(probe_lines)"
	netifd_set wan up 160 eth0 dhcp
	netifd_event interface.update wan
	expect "the trigger ran ifevent" wait_until 10 ifstate_is wan "1 160 eth0"
	sleep 1
	expect "no reprobe for an update" [ "$(probe_lines)" = "$before" ]
	expect "same process" [ "$(agent_pid)" = "$(cat "$WORK/pid.events")" ]
}

s_if_down() {
	local before
	before="$(probe_lines)"
	netifd_set wan down dhcp
	netifd_event interface.down wan
	expect "the trigger ran ifevent" wait_until 10 ifstate_is wan "0 0 "
	sleep 1
	expect "no reprobe, no rebuild on down" [ "$(probe_lines)" = "$before" ]
	expect "the binding keeps its device" bash -c "rendered | grep -q \"interface: 'eth0'\""
	expect "same process" [ "$(agent_pid)" = "$(cat "$WORK/pid.events")" ]
}

s_if_up() {
	local before
	before="$(probe_lines)"
	netifd_set wan up 1 eth0 dhcp
	netifd_event interface.update wan
	expect "reprobe on ifup" wait_until 10 bash -c "[ \$(probe_lines) -gt $before ]"
	r logread | grep "interface wan is up" | tail -1
	expect "same process" [ "$(agent_pid)" = "$(cat "$WORK/pid.events")" ]
}

s_pppoe_up() {
	local reloads
	reloads="$(log_count 'event=reloaded')"
	netifd_set wan up 3 pppoe-wan pppoe
	netifd_event interface.update wan
	expect "rendered on pppoe-wan" wait_until 10 bash -c "rendered | grep -q \"interface: 'pppoe-wan'\""
	expect "the agent reloaded (SIGHUP), not restarted" \
		wait_until 10 bash -c "[ \$(log_count 'event=reloaded') -gt $reloads ]"
	r logread | grep "event=reloaded" | tail -1
	expect "same process" [ "$(agent_pid)" = "$(cat "$WORK/pid.events")" ]
}

s_pppoe_drop() {
	local before reloads
	before="$(probe_lines)"
	reloads="$(log_count 'event=reloaded')"
	netifd_set wan down pppoe  # while PPP is down, netifd shows only the Ethernet device
	netifd_event interface.down wan
	expect "the trigger ran ifevent" wait_until 10 ifstate_is wan "0 0 "
	sleep 1
	expect "still on pppoe-wan" bash -c "rendered | grep -q \"interface: 'pppoe-wan'\""
	expect "no reload" [ "$(log_count 'event=reloaded')" = "$reloads" ]
	expect "no reprobe" [ "$(probe_lines)" = "$before" ]
	netifd_set wan up 2 pppoe-wan pppoe
	netifd_event interface.update wan
	expect "reprobe when PPP is back" wait_until 10 bash -c "[ \$(probe_lines) -gt $before ]"
	sleep 1
	expect "no reload when PPP is back" [ "$(log_count 'event=reloaded')" = "$reloads" ]
	expect "same process" [ "$(agent_pid)" = "$(cat "$WORK/pid.events")" ]
}

s_other_iface() {
	local before
	before="$(probe_lines)"
	netifd_set lan up 1 br-lan static
	netifd_event interface.update lan
	sleep 2.5
	expect "no state kept for lan" [ ! -e "$ROOT/tmp/run/nat-keepalive/ifstate.lan" ]
	expect "nothing done" [ "$(probe_lines)" = "$before" ]
}

s_reprobe_cmd() {
	r /etc/init.d/nat-keepalive reprobe
	r /etc/init.d/nat-keepalive help 2>&1 | grep -E "reprobe|ifevent"
}

s_disabled() {
	uci_do "set $NAME.main.enabled=0"
	r reload_config
	expect "the instance is gone" wait_until 15 bash -c "! running"
	log_has "disabled in /etc/config/nat-keepalive"
	uci_do "set $NAME.main.enabled=1"
	r reload_config
	expect "running again" wait_until 15 running
}

s_stop_start() {
	r /etc/init.d/nat-keepalive stop
	expect "stopped" wait_until 10 bash -c "! r ubus call service list | grep -q '\"$NAME\"'"
	r /etc/init.d/nat-keepalive start
	expect "started" wait_until 15 running
}

s_disable() {
	r /etc/init.d/nat-keepalive disable
	expect "no boot link" [ ! -e "$ROOT/etc/rc.d/S95nat-keepalive" ]
	if r /etc/init.d/nat-keepalive enabled; then return 1; fi
	r /etc/init.d/nat-keepalive enable
	[ -L "$ROOT/etc/rc.d/S95nat-keepalive" ]
}

s_uninstall() {
	local f
	r env IPKG_INSTROOT= /usr/lib/opkg/info/$NAME.prerm remove
	expect "procd dropped the service" \
		wait_until 10 bash -c "! r ubus call service list | grep -q '\"$NAME\"'"
	expect "no boot link" [ ! -e "$ROOT/etc/rc.d/S95nat-keepalive" ]
	while read -r f; do
		rm -f "$ROOT$f"
	done <"$ROOT/usr/lib/opkg/info/$NAME.list"
	r env IPKG_INSTROOT= /usr/lib/opkg/info/$NAME.postrm remove
	sleep 0.5
	CMD=(ubus send nat-keepalive.test '{}')
	if u; then
		echo "the user may still send after the ACL was removed"
		return 1
	fi
	expect "the agent's process is gone" bash -c "! ps -eo args | grep -q '[n]at-keepalive run'"
}

run_steps() {
	step "ubusd, logd, procd (not PID 1), netifd stand-in and a SIP server are up" s_daemons
	step "control: with the package's user and ACL but without the postinst, ubusd denies the send" s_control_denied
	step "install: postinst (default_postinst: user, ubusd SIGHUP, enable, start)" s_postinst
	step "right after install: the hook as user $NAME reaches ubus listen and events.d" s_hook_after_install
	step "uci add (anonymous section), commit, /etc/init.d/nat-keepalive reload starts the agent" s_configure
	step "/etc/init.d/nat-keepalive status and nat-keepalive status" s_status
	step "logread shows the agent's events" s_logread
	step "the agent runs as $NAME (procd's user), no capabilities, no_new_privs not claimed" s_user
	step "the agent's own hook: events.d and ubus listen see reachable" s_agent_hook
	step "ubus call service validate returns the agent and binding schema" s_validate
	step "procd holds the interface.* and config.change triggers" s_triggers
	step "a bad UCI value: reload refused, named, the agent keeps running" s_bad_value
	step "log_level changed by reload_config applies without a restart" s_log_level
	step "an unknown hook_event: reload refused, the agent keeps running" s_hook_event
	step "kill -9: procd respawns the agent" s_respawn
	step "a port below 1024: started as root, the agent drops to $NAME" s_low_port
	step "an anonymous section without a name is refused by its @binding[N] name" s_unnamed
	step "a binding on interface wan gets wan's device from netifd" s_wan_binding
	step "procd.sh's real service message equals the one procd_emul.sh builds" s_emulation_truth
	step "interface.update with wan still up on the same device: nothing" s_if_update_no_change
	step "interface.down: nothing (no rebuild on the fallback device)" s_if_down
	step "interface.update after the down (wan came up): reprobe (SIGUSR2)" s_if_up
	step "PPPoE-like: wan up on pppoe-wan: re-rendered and reloaded (SIGHUP)" s_pppoe_up
	step "PPPoE-like: PPP drops and comes back: no rebuild, a reprobe" s_pppoe_drop
	step "an event of an interface the agent does not watch: nothing" s_other_iface
	step "/etc/init.d/nat-keepalive reprobe; help lists reprobe and ifevent" s_reprobe_cmd
	step "enabled 0 stops the agent, enabled 1 starts it" s_disabled
	step "stop and start" s_stop_start
	step "disable and enable" s_disable
	step "uninstall: prerm stops and disables, postrm makes ubusd drop the ACL" s_uninstall
}

if [ "${1:-}" = --inner ]; then
	STEPS="$4"  # the build and the layout
	inner "$2" "$3"
else
	outer "$@"
fi
