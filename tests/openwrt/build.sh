#!/bin/bash
# Builds OpenWrt's libubox, ubus, uci, udebug, ubox, jsonpath and procd from their upstream sources
# on Debian, into STAGE (a DESTDIR tree with /usr and /sbin). Used by real.sh; runnable alone:
#   bash tests/openwrt/build.sh SRC_DIR STAGE_DIR
# SRC_DIR holds one clone per project (libubox, ubus, uci, udebug, ubox, jsonpath, procd).
# Needs: cmake gcc pkg-config libjson-c-dev.
set -euo pipefail

src="$(cd "$1" && pwd)"
stage="$(mkdir -p "$2" && cd "$2" && pwd)"
build="$stage/.build"
mkdir -p "$build"
log="$build/build.log"
# Upstream builds with -Werror for OpenWrt's compilers; Debian's newer gcc warns more.
cat >"$build/cc" <<'CC'
#!/bin/sh
exec gcc "$@" -Wno-error
CC
chmod +x "$build/cc"

cm() {  # PROJECT [TARGET...]: configure, build the targets (all when none), install
	local name="$1" b="$build/$1" commit
	shift
	commit="$(git -C "$src/$name" rev-parse HEAD 2>/dev/null || echo unknown)"
	if [ -f "$b/.done" ] && [ "$(cat "$b/.done")" = "$commit" ]; then
		return 0
	fi
	rm -rf "$b"
	mkdir -p "$b"
	echo "build: $name $commit" >&2
	local dir="$src/$name"
	if [ "$name" = jsonpath ]; then  # its CMakeLists runs lemon with paths relative to the build
		dir="$b/src"
		mkdir -p "$dir"
		cp -a "$src/$name/." "$dir/"
	fi
	(
		cd "$b"
		[ "$name" = jsonpath ] && cd "$dir"
		cmake "$dir" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$build/cc" \
			-DCMAKE_PREFIX_PATH="$stage/usr" -DCMAKE_C_FLAGS="-I$stage/usr/include" \
			-DCMAKE_EXE_LINKER_FLAGS="-L$stage/usr/lib -Wl,-rpath-link,$stage/usr/lib" \
			-DCMAKE_SHARED_LINKER_FLAGS="-L$stage/usr/lib -Wl,-rpath-link,$stage/usr/lib" \
			-DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF -DBUILD_TESTS=OFF -DBUILD_STATIC=OFF \
			-Ducode_include_dir="$b" -DUCI_DEBUG=OFF "${CMAKE_EXTRA[@]}"
		if [ "$#" -gt 0 ]; then
			make -j2 "$@"
		else
			make -j2
		fi
	) >>"$log" 2>&1 || { echo "build: $name failed, see $log" >&2; tail -30 "$log" >&2; exit 1; }
	echo "$commit" >"$b/.done"
}

inst() {  # PROJECT FILE DEST: install one built file
	install -D -m 0755 "$build/$1/$2" "$stage/$3"
}

CMAKE_EXTRA=()
cm libubox
make -C "$build/libubox" install DESTDIR="$stage" >>"$log" 2>&1
cm ubus
make -C "$build/ubus" install DESTDIR="$stage" >>"$log" 2>&1
cm uci
make -C "$build/uci" install DESTDIR="$stage" >>"$log" 2>&1
cm udebug udebug
install -D -m 0644 "$src/udebug/udebug.h" "$stage/usr/include/udebug.h"
[ -f "$src/udebug/udebug-pcap.h" ] && install -D -m 0644 "$src/udebug/udebug-pcap.h" "$stage/usr/include/udebug-pcap.h"
cp -a "$build/udebug"/libudebug.so* "$stage/usr/lib/"
cm ubox validate_data logd logread
cp -a "$build/ubox"/libvalidate.so* "$stage/usr/lib/"
inst ubox validate_data sbin/validate_data
inst ubox logd sbin/logd
inst ubox logread sbin/logread
cm jsonpath jsonpath
inst jsonpath src/jsonpath usr/bin/jsonfilter

# glibc before 2.38 has no strlcpy, which procd uses (musl and uClibc have it).
cat >"$build/strlcpy.c" <<'C'
#include <string.h>
size_t strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size) {
		size_t n = len >= size ? size - 1 : len;
		memcpy(dst, src, n);
		dst[n] = 0;
	}
	return len;
}
C
gcc -c -O2 -o "$build/strlcpy.o" "$build/strlcpy.c"
CMAKE_EXTRA=(-DCMAKE_C_STANDARD_LIBRARIES="$build/strlcpy.o")
cm procd procd setlbf
inst procd procd sbin/procd
# procd preloads it into instances whose stdout it logs (line-buffered output)
install -D -m 0755 "$build/procd/libsetlbf.so" "$stage/lib/libsetlbf.so"
# The shell side of libubox (jshn.sh), as OpenWrt installs it.
install -D -m 0644 "$src/libubox/sh/jshn.sh" "$stage/usr/share/libubox/jshn.sh"
# OpenWrt's layout: uci in /sbin, ubus in /bin.
[ -e "$stage/usr/bin/uci" ] && install -D -m 0755 "$stage/usr/bin/uci" "$stage/sbin/uci"
[ -e "$stage/usr/bin/ubus" ] && install -D -m 0755 "$stage/usr/bin/ubus" "$stage/bin/ubus"
[ -e "$stage/usr/sbin/ubusd" ] && install -D -m 0755 "$stage/usr/sbin/ubusd" "$stage/sbin/ubusd"
echo "build: done" >&2
