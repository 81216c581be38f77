"""What the one-shot commands do over real sockets and files (`probe`, `discover`, reading the
status file for `status` and `collectd`).

These processes live for seconds, so they use the ordinary standard library; the lean imports of
the long-running process (cstdlib.py) are not needed here.
"""
