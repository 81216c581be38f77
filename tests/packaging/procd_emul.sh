# shellcheck shell=sh
# TEST-ONLY EMULATION of the procd side of an init script: /lib/functions/procd.sh, the
# rc.common `start` that wraps start_service, and the parts of ubus, jsonfilter and netifd the
# init script asks. It tells the truth where the real components were found to differ from a
# plain record of calls (tests/openwrt/real.sh runs the real ones):
#   - `start` builds the JSON message that procd.sh sends with `ubus call service set`, with
#     procd.sh's shapes: instances, parameters typed as procd.sh types them (a type procd.sh does
#     not know adds nothing), respawn's default values, triggers as
#     [TYPE, ["if", ["eq", KEY, VALUE], ["run_script", ...]], DELAY], and one `"validate": [...]`
#     key per procd_add_validation call (the message then holds the key twice, and procd keeps
#     one). Each message is one line appended to $PROCD_JSON.
#   - the schema of a validation is what validate_data prints for an empty section name.
#   - `ubus call network.interface.NAME status` answers $EMUL_NETIFD/NAME.json (netifd's status
#     of that interface) and fails for an interface netifd does not have; jsonfilter -s -e '@.key'
#     reads one key of it.
# Every call is also appended, one line each, to $PROCD_TRACE. procd_running answers from
# $EMUL_PROCD_RUNNING (1 = an instance is running). logger and chown are recorded, so a test
# never writes to this machine's syslog or needs the nat-keepalive user.
# shellcheck disable=SC3043

emul_trace() {
	echo "$*" >>"${PROCD_TRACE:?PROCD_TRACE is not set}"
}

emul_jstr() {  # a JSON string (the values here have no control characters)
	printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

emul_jarray() {  # STRINGS... -> a JSON array of strings in EMUL_A
	local item
	EMUL_A=""
	for item in "$@"; do
		EMUL_A="$EMUL_A${EMUL_A:+,}$(emul_jstr "$item")"
	done
	EMUL_A="[$EMUL_A]"
}

emul_add() {  # append a JSON member or element to the buffer variable $1
	eval "$1=\"\${$1}\${$1:+,}\$2\""
}

# --- the service message ---------------------------------------------------------------------

procd_open_service() {
	EMUL_SERVICE="$(emul_jstr name):$(emul_jstr "$1")"
	[ -n "$2" ] && EMUL_SERVICE="$EMUL_SERVICE,$(emul_jstr script):$(emul_jstr "$2")"
	EMUL_INSTANCES="" EMUL_TRIGGERS="" EMUL_VALIDATES="" EMUL_SEQ=0
}

procd_close_service() {
	local data=""
	service_triggers
	# procd.sh adds a data object when service_data exists, and rc.common always defines it
	if type service_data >/dev/null 2>&1; then
		service_data
		data=',"data":{}'
	fi
	printf '{%s,"instances":{%s},"triggers":[%s]%s%s}\n' "$EMUL_SERVICE" "$EMUL_INSTANCES" \
		"$EMUL_TRIGGERS" "$EMUL_VALIDATES" "$data" >>"${PROCD_JSON:?PROCD_JSON is not set}"
}

procd_open_instance() {
	emul_trace "procd_open_instance $*"
	EMUL_SEQ=$((EMUL_SEQ + 1))
	EMUL_INAME="${1:-instance$EMUL_SEQ}"
	EMUL_PARAMS="" EMUL_RESPAWN="" EMUL_HAS_RESPAWN=0
}

procd_set_param() {
	local type="$1"
	emul_trace "procd_set_param $*"
	shift
	case "$type" in
		command | netdev | file | respawn | watch | watchdog)
			emul_jarray "$@"
			if [ "$type" = respawn ]; then
				EMUL_HAS_RESPAWN=1 EMUL_RESPAWN="$*"
				return 0
			fi
			emul_add EMUL_PARAMS "$(emul_jstr "$type"):$EMUL_A" ;;
		nice | term_timeout) emul_add EMUL_PARAMS "$(emul_jstr "$type"):$1" ;;
		pidfile | user | group | seccomp | capabilities | facility | extroot | overlaydir | \
			tmpoverlaysize | vrf)
			emul_add EMUL_PARAMS "$(emul_jstr "$type"):$(emul_jstr "$1")" ;;
		stdout | stderr | no_new_privs)
			if [ "$1" = 1 ]; then
				emul_add EMUL_PARAMS "$(emul_jstr "$type"):true"
			else
				emul_add EMUL_PARAMS "$(emul_jstr "$type"):false"
			fi ;;
		env | data | limits)
			echo "procd_emul: table parameter '$type' is not emulated" >&2
			return 2 ;;
	esac
}

procd_close_instance() {
	emul_trace "procd_close_instance"
	if [ "$EMUL_HAS_RESPAWN" = 1 ]; then
		# procd.sh: an empty respawn gets system.@service[0]'s values or 3600 5 5, as strings
		if [ -z "$EMUL_RESPAWN" ]; then
			emul_jarray 3600 5 5
		else
			# shellcheck disable=SC2086
			emul_jarray $EMUL_RESPAWN
		fi
		emul_add EMUL_PARAMS "\"respawn\":$EMUL_A"
	fi
	emul_add EMUL_INSTANCES "$(emul_jstr "$EMUL_INAME"):{$EMUL_PARAMS}"
}

procd_append_param() {
	echo "procd_emul: procd_append_param is not emulated" >&2
	return 2
}

procd_add_reload_trigger() {
	local file
	emul_trace "procd_add_reload_trigger $*"
	for file in "$@"; do
		emul_jarray run_script "/etc/init.d/$NAME" reload
		emul_add EMUL_TRIGGERS "[\"config.change\",[\"if\",[\"eq\",\"package\",$(emul_jstr "$file")],$EMUL_A],1000]"
	done
}

procd_add_interface_trigger() {  # TYPE INTERFACE COMMAND...
	local type="$1" iface="$2"
	emul_trace "procd_add_interface_trigger $*"
	shift 2
	emul_jarray run_script "$@"
	emul_add EMUL_TRIGGERS "[$(emul_jstr "$type"),[\"if\",[\"eq\",\"interface\",$(emul_jstr "$iface")],$EMUL_A],1000]"
}

procd_add_validation() {  # procd.sh: a new "validate" array, filled by the function
	emul_trace "procd_add_validation $*"
	EMUL_SCHEMA=""
	"$@"
	EMUL_VALIDATES="$EMUL_VALIDATES,\"validate\":[$EMUL_SCHEMA]"
}

# uci_emul.sh's uci_load_validate calls this for an empty section name, as procd.sh's does
# through validate_data: one object per section type. The shell that evaluates validate_data's
# output drops the double quotes inside a datatype (or("auto",ufloat) -> or(auto,ufloat)).
emul_schema() {  # PACKAGE TYPE SPEC...
	local package="$1" type="$2" spec opt rest expr data=""
	shift 2
	for spec in "$@"; do
		opt="${spec%%:*}"
		rest="${spec#*:}"
		expr="$(printf '%s' "${rest%%:*}" | tr -d '"')"
		emul_add data "$(emul_jstr "$opt"):$(emul_jstr "$expr")"
	done
	emul_add EMUL_SCHEMA "{\"package\":$(emul_jstr "$package"),\"type\":$(emul_jstr "$type"),\"data\":{$data}}"
}

procd_send_signal() { emul_trace "procd_send_signal $*"; }
procd_running() { [ "${EMUL_PROCD_RUNNING:-0}" = 1 ]; }
logger() { emul_trace "logger $*"; }
chown() { emul_trace "chown $*"; }

extra_command() { :; }  # rc.common: registers a command name for the usage text
service_data() { return 0; }  # rc.common's default (an init script may define its own)

start() {  # rc.common with USE_PROCD: rc_procd start_service
	emul_trace "start"
	procd_open_service "$NAME" "/etc/init.d/$NAME"
	start_service "$@"
	procd_close_service
}

# --- netifd, ubus, jsonfilter ------------------------------------------------------------------

ubus() {  # only `ubus call network.interface.NAME status`
	local file
	case "$1 $3" in
		"call status")
			case "$2" in
				network.interface.*)
					file="${EMUL_NETIFD:?EMUL_NETIFD is not set}/${2#network.interface.}.json"
					if [ -f "$file" ]; then
						cat "$file"
						return 0
					fi
					echo "Command failed: Not found" >&2
					return 4 ;;
			esac ;;
	esac
	echo "procd_emul: ubus $* is not emulated" >&2
	return 2
}

jsonfilter() {  # only `jsonfilter -s JSON -e '@.KEY'`; prints nothing when KEY is missing
	if [ "$1" != -s ] || [ "$3" != -e ]; then
		echo "procd_emul: jsonfilter $* is not emulated" >&2
		return 2
	fi
	python3 -c 'import json, sys
value = json.loads(sys.argv[1]).get(sys.argv[2][2:])
if value is not None:
    print(json.dumps(value) if isinstance(value, bool) else value)
else:
    sys.exit(1)' "$2" "$4"
}
