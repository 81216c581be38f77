# shellcheck shell=sh
# TEST-ONLY EMULATION of the OpenWrt shell API that files/nat-keepalive.init calls:
#   config_load, config_get, config_foreach, config_list_foreach  (/lib/functions.sh)
#   uci_load_validate, uci_validate_section                       (/lib/functions/procd.sh)
# and a stand-in for /sbin/validate_data that knows only the datatypes the init script uses
# (bool string uinteger ufloat ipaddr range(a,b) or(...) list(...)); any other datatype fails
# loudly. Written from the documented contracts, not copied: a UCI file in the format that
# `uci export` prints is sourced with config/option/list defined; anonymous sections get names
# like cfg000001 (real UCI: cfgXXXXXX, hex); validate_data prints `opt=value;` or `unset -v opt;`
# per option and exits non-zero when any option fails its datatype.
# Files are read from $UCI_CONFIG_DIR (default /etc/config), as `uci -c` does.
# shellcheck disable=SC3043

EMUL_SECTIONS=""
EMUL_ANON=0
EMUL_CURRENT=""

config() {  # config TYPE [NAME]
	local name="$2"
	if [ -z "$name" ]; then
		EMUL_ANON=$((EMUL_ANON + 1))
		name="$(printf 'cfg%06x' "$EMUL_ANON")"
	fi
	EMUL_CURRENT="$name"
	EMUL_SECTIONS="$EMUL_SECTIONS $name"
	eval "EMUL_${name}__TYPE=\$1"
}

option() {  # option NAME VALUE
	eval "EMUL_${EMUL_CURRENT}_$1=\$2"
}

list() {  # list NAME VALUE: items kept one by one, and joined by blanks like config_get shows them
	local n
	eval "n=\${EMUL_${EMUL_CURRENT}_$1__N:-0}"
	n=$((n + 1))
	eval "EMUL_${EMUL_CURRENT}_$1__N=\$n"
	eval "EMUL_${EMUL_CURRENT}_$1__$n=\$2"
	eval "EMUL_${EMUL_CURRENT}_$1=\"\${EMUL_${EMUL_CURRENT}_$1:+\$EMUL_${EMUL_CURRENT}_$1 }\$2\""
}

config_load() {  # config_load PACKAGE
	local file="${UCI_CONFIG_DIR:-/etc/config}/$1"
	EMUL_SECTIONS=""
	EMUL_ANON=0
	[ -f "$file" ] || return 1
	# shellcheck source=/dev/null
	. "$file"
}

config_get() {  # config_get VAR SECTION OPTION [DEFAULT]
	eval "$1=\${EMUL_$2_$3:-\$4}"
}

config_foreach() {  # config_foreach FUNCTION TYPE [ARGS...]
	local fn="$1" type="$2" section stype
	shift 2
	for section in $EMUL_SECTIONS; do
		eval "stype=\$EMUL_${section}__TYPE"
		[ "$stype" = "$type" ] || continue
		"$fn" "$section" "$@"
	done
}

config_list_foreach() {  # config_list_foreach SECTION OPTION FUNCTION [ARGS...]
	local section="$1" opt="$2" fn="$3" n i=1 item
	shift 3
	eval "n=\${EMUL_${section}_${opt}__N:-0}"
	while [ "$i" -le "$n" ]; do
		eval "item=\$EMUL_${section}_${opt}__$i"
		"$fn" "$item" "$@"
		i=$((i + 1))
	done
}

# --- validation ---------------------------------------------------------------------------------

emul_quote() {  # a value as a single-quoted shell word
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

emul_matches() {  # VALUE ERE
	printf '%s' "$1" | grep -Eq "$2"
}

emul_datatype() {  # VALUE DATATYPE -> status 0 valid, 1 invalid
	local v="$1" t="$2" inner alt lo hi
	[ -n "$v" ] || [ "$t" = string ] || { emul_datatype x "$t"; [ $? = 2 ] && return 2; return 1; }
	case "$t" in
		bool) case "$v" in 0 | 1 | on | off | true | false | yes | no | enabled | disabled) return 0 ;; esac
			return 1 ;;
		string) return 0 ;;
		uinteger) emul_matches "$v" '^[0-9]+$' ;;
		# libvalidate's ufloat truncates to an int before comparing with 0: -0.5 passes
		ufloat) emul_matches "$v" '^[+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$' \
			|| emul_matches "$v" '^-(0+[.]?[0-9]*|[.][0-9]+)$' ;;
		ipaddr) emul_matches "$v" '^([0-9]{1,3}[.]){3}[0-9]{1,3}$' \
			|| emul_matches "$v" '^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$' ;;
		range\(*) inner="${t#range(}"; inner="${inner%)}"; lo="${inner%,*}"; hi="${inner#*,}"
			emul_matches "$v" '^[0-9]+$' || return 1
			awk -v v="$v" -v lo="$lo" -v hi="$hi" 'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + 0) }' ;;
		or\(*) inner="${t#or(}"; inner="${inner%)}"
			while [ -n "$inner" ]; do
				alt="${inner%%,*}"
				case "$inner" in *,*) inner="${inner#*,}" ;; *) inner="" ;; esac
				case "$alt" in
					\"*\") alt="${alt#\"}"
						[ "$v" = "${alt%\"}" ] && return 0 ;;
					*) emul_datatype "$v" "$alt"
						case $? in 0) return 0 ;; 2) return 2 ;; esac ;;
				esac
			done
			return 1 ;;
		*) echo "uci_emul: datatype '$t' is not emulated" >&2
			return 2 ;;
	esac
}

emul_export() {  # NAME DATATYPE VALUE: what validate_data prints for a valid value
	case "$2" in
		bool) case "$3" in 1 | on | true | yes | enabled) printf '%s=1; ' "$1" ;; *) printf '%s=0; ' "$1" ;; esac ;;
		*) printf '%s=%s; ' "$1" "$(emul_quote "$3")" ;;
	esac
}

emul_validate_data() {  # PACKAGE TYPE SECTION SPEC...
	local package="$1" section="$3" rc=0 spec opt expr base def rest value n i item items ok
	shift 3
	for spec in "$@"; do
		opt="${spec%%:*}"
		rest="${spec#*:}"
		expr="${rest%%:*}"
		case "$rest" in *:*) def="${rest#*:}" ;; *) def="" ;; esac
		eval "n=\${EMUL_${section}_${opt}__N:-0}"
		base="$expr"
		case "$base" in list\(*) base="${base#list(}"; base="${base%)}" ;; esac
		emul_datatype "" "$base"
		[ $? = 2 ] && return 2
		case "$expr" in
			list\(*)
				expr="${expr#list(}"
				expr="${expr%)}"
				items=""
				i=1
				while [ "$i" -le "$n" ]; do
					eval "item=\$EMUL_${section}_${opt}__$i"
					if emul_datatype "$item" "$expr"; then
						items="${items:+$items }$item"
					else
						echo "$package.$section.${opt}[$i]=$item validates as $expr with false" >&2
						rc=1
					fi
					i=$((i + 1))
				done
				if [ -n "$items" ]; then printf '%s=%s; ' "$opt" "$(emul_quote "$items")"; else printf 'unset -v %s; ' "$opt"; fi
				continue ;;
		esac
		eval "value=\${EMUL_${section}_${opt}-}"
		if [ -z "$value" ]; then
			if [ -n "$def" ]; then emul_export "$opt" "$expr" "$def"; else printf 'unset -v %s; ' "$opt"; fi
			continue
		fi
		ok=0
		emul_datatype "$value" "$expr" || ok=$?
		[ "$ok" = 2 ] && return 2
		if [ "$ok" = 0 ]; then
			emul_export "$opt" "$expr" "$value"
			echo "$package.$section.$opt=$value validates as $expr with true" >&2
		else
			printf 'unset -v %s; ' "$opt"
			echo "$package.$section.$opt=$value validates as $expr with false" >&2
			rc=1
		fi
	done
	return "$rc"
}

uci_load_validate() {  # PACKAGE TYPE SECTION CALLBACK SPEC...
	local _package="$1" _type="$2" _name="$3" _function="$4" _option _result _out
	shift 4
	if [ -z "$_name" ]; then  # procd_add_validation asks for the schema only (procd_emul.sh)
		emul_schema "$_package" "$_type" "$@"
		return 0
	fi
	for _option in "$@"; do
		eval "local ${_option%%:*}"
	done
	_out="$(emul_validate_data "$_package" "$_type" "$_name" "$@" 2>/dev/null)"
	_result=$?
	eval "$_out"
	[ "$_result" = 0 ] || emul_validate_data "$_package" "$_type" "$_name" "$@" >/dev/null
	[ -n "$_function" ] || return "$_result"
	"$_function" "$_name" "$_result"
}
