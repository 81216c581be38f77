"""A cooperating responder: proves a NAT binding from outside for agents that ask it to.

`core` is sans-I/O (bytes, source and `now` in, answers out); `loop` runs it on UDP sockets and is
started by `nat-keepalive responder` (cli). See docs/responder.md.
"""
