# shellcheck shell=sh
# TEST-ONLY EMULATION of the procd side of an init script: /lib/functions/procd.sh and the
# rc.common `start` that wraps start_service. Every call is appended, one line each, to
# $PROCD_TRACE so a test can read what the init script asked procd for. procd_running answers
# from $EMUL_PROCD_RUNNING (1 = an instance is running). logger and chown are recorded too, so
# a test never writes to this machine's syslog or needs the nat-keepalive user.

emul_trace() {
	echo "$*" >>"${PROCD_TRACE:?PROCD_TRACE is not set}"
}

procd_open_instance() { emul_trace "procd_open_instance $*"; }
procd_close_instance() { emul_trace "procd_close_instance"; }
procd_set_param() { emul_trace "procd_set_param $*"; }
procd_append_param() { emul_trace "procd_append_param $*"; }
procd_add_reload_trigger() { emul_trace "procd_add_reload_trigger $*"; }
procd_add_interface_trigger() { emul_trace "procd_add_interface_trigger $*"; }
procd_send_signal() { emul_trace "procd_send_signal $*"; }
procd_running() { [ "${EMUL_PROCD_RUNNING:-0}" = 1 ]; }
procd_add_validation() { "$@"; }  # like procd.sh: the function, called without a section
logger() { emul_trace "logger $*"; }
chown() { emul_trace "chown $*"; }

extra_command() { :; }  # rc.common: registers a command name for the usage text

start() {  # rc.common: a service definition holds what start_service declared
	emul_trace "start"
	start_service "$@"
}
