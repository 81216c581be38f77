/* nat-keepalive's graphs for LuCI Statistics (luci-app-statistics): the values that
 * `nat-keepalive collectd` feeds collectd's exec plugin, one set of graphs per binding.
 * Copy to /www/luci-static/resources/statistics/rrdtool/definitions/nat_keepalive.js */

'use strict';
'require baseclass';

return baseclass.extend({
	title: _('NAT keepalive'),

	rrdargs: function(graph, host, plugin, plugin_instance, dtype) {
		var rtt = {
			title: "%H: %pi: SIP round trip time",
			vlabel: "s",
			number_format: "%5.3lf s",
			data: {
				types: [ "latency" ],
				options: {
					latency_rtt: { noarea: true, title: "RTT" }
				}
			}
		};

		var reachable = {
			title: "%H: %pi: reachable",
			vlabel: "",
			y_min: "0",
			y_max: "1",
			number_format: "%1.0lf",
			data: {
				types: [ "bool" ],
				options: {
					bool_reachable: { title: "reachable" }
				}
			}
		};

		var probes = {
			title: "%H: %pi: probes",
			vlabel: "per second",
			number_format: "%5.3lf/s",
			data: {
				instances: {
					derive: [ "probes_sent", "answers", "timeouts", "dropped" ]
				},
				options: {
					derive_probes_sent: { noarea: true, overlay: true, title: "sent" },
					derive_answers: { noarea: true, overlay: true, title: "answers" },
					derive_timeouts: { noarea: true, overlay: true, title: "timeouts" },
					derive_dropped: { noarea: true, overlay: true, title: "dropped" }
				}
			}
		};

		var mapping = {
			title: "%H: %pi: mapping changes and expiries",
			vlabel: "per second",
			number_format: "%5.4lf/s",
			data: {
				instances: {
					derive: [ "changes", "expiries" ]
				},
				options: {
					derive_changes: { noarea: true, overlay: true, title: "changes" },
					derive_expiries: { noarea: true, overlay: true, title: "expiries" }
				}
			}
		};

		var timing = {
			title: "%H: %pi: interval, lifetime, since last answer",
			vlabel: "s",
			number_format: "%5.1lf s",
			data: {
				types: [ "duration" ],
				options: {
					duration_interval: { noarea: true, overlay: true, title: "interval" },
					duration_lifetime: { noarea: true, overlay: true, title: "lifetime" },
					duration_since_answer: { noarea: true, overlay: true, title: "since last answer" }
				}
			}
		};

		return [ rtt, reachable, probes, mapping, timing ];
	}
});
