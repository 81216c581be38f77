"""Capture the answers of the lab's real SIP stacks (tests/lab/stacks.py) for the parser's corpus.

    sudo python3 tests/lab/capture_stacks.py [--out tests/data/captured]

Each stack runs in a lab of its own (in parallel); the request shapes of tests/fuzz/capture_seeds.py
are sent from the `lan` namespace through the NAT, plus a CRLF keepalive ("\\r\\n\\r\\n"), and every
datagram that comes back is written byte for byte to OUT/<stack>_<case>.sip, with
MANIFEST-stacks.txt naming the request each came from (answers the parser refuses go to
OUT/malformed/). No stack answers a CRLF keepalive over
UDP; linphone, registered, sends them: one is kept as linphone_crlf_keepalive_sent.sip.
Kamailio with the lab's config and SIPp are captured by capture_seeds.py already.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
if str(ROOT / "agent") not in sys.path:
    sys.path.insert(0, str(ROOT / "agent"))

from natkeepalive.errors import SipParseError  # noqa: E402
from natkeepalive.sip.message import parse_response  # noqa: E402
from tests.fuzz.capture_seeds import CASES, PORT  # noqa: E402
from tests.lab import netlab, stacks  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "captured"
STACKS = ("kamailio-stock", "ejabberd", "baresip", "linphone", "node-sip", "perl-net-sip")
CRLF = b"\r\n\r\n"
REGISTRAR_PORT = 5099
MALFORMED = "malformed"  # the folder for answers the parser refuses


def _parses(data: bytes) -> bool:
    try:
        parse_response(data)
    except SipParseError:
        return False
    return True


def capture_stack(stack: str, out: Path) -> list[tuple[str, str, int]]:
    written: list[tuple[str, str, int]] = []
    with netlab.Lab() as lab:
        server = stacks.start_stack(lab, stack)
        shell = lab.udp_shell("lan")
        shell.open("binding", netlab.LAN_IP, PORT)
        cases = [(name, make(server.port), what) for name, make, what in CASES]
        cases.append(("crlf_keepalive", CRLF, "a CRLF keepalive (RFC 5626 3.5.1 over UDP)"))
        for name, request, what in cases:
            shell.send("binding", request, netlab.SERVER_IP, server.port)
            # Every datagram that comes back within the wait: a stack may send more than one.
            got = shell.recv(1.5, wait_all=True)
            for index, (_, data, _) in enumerate(got):
                suffix = "" if index == 0 else f"_{index + 1}"
                filename = f"{stack}_{name}{suffix}.sip"
                if data.lstrip(b"\r\n").startswith(b"SIP/2.0 ") and not _parses(data):
                    # What a stack got wrong: kept apart, the corpus's answers are valid ones.
                    (out / MALFORMED).mkdir(exist_ok=True)
                    filename = f"{MALFORMED}/{filename}"
                (out / filename).write_bytes(data)
                written.append((filename, f"{stack}: {what}", len(data)))
            if not got:
                print(f"{stack} {name}: no answer ({what})")
    return written


def _registrar_ok(register: bytes) -> bytes:
    """A 200 OK to a REGISTER: its Via, From, To (tagged), Call-ID, CSeq and Contact."""
    wanted = ("via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:", "contact:", "m:")
    lines = [
        line
        for line in register.decode("utf-8", "replace").split("\r\n")
        if line.lower().replace(" ", "").startswith(wanted)
    ]
    lines = [
        line + ";tag=lab" if line.lower().startswith(("to:", "t:")) else line for line in lines
    ]
    head = ["SIP/2.0 200 OK", *lines, "Expires: 3600", "Content-Length: 0"]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def capture_linphone_keepalive(out: Path) -> list[tuple[str, str, int]]:
    """linphone as a client: registered (to a registrar stub in the server namespace) it sends
    CRLF keepalives on its flow, which is what a binding sees from such a peer."""
    with netlab.Lab() as lab:
        shell = lab.udp_shell("wan")
        shell.open("registrar", netlab.SERVER_IP, REGISTRAR_PORT)
        server = stacks.Linphone(lab, "linphone")
        with open(server.rc, "w") as handle:
            handle.write(
                "[sip]\nkeepalive_period=1000\n[proxy_0]\n"
                f"reg_proxy=<sip:{netlab.SERVER_IP}:{REGISTRAR_PORT};transport=udp>\n"
                f"reg_identity=sip:lab@{netlab.SERVER_IP}\nreg_expires=3600\n"
                "reg_sendregister=1\n"
            )
        server.start()
        for _ in range(20):
            for _, data, source in shell.recv(1.0):
                if data.startswith(b"REGISTER "):
                    shell.send("registrar", _registrar_ok(data), *source)
                elif data.strip(b"\r\n") == b"":
                    filename = "linphone_crlf_keepalive_sent.sip"
                    (out / filename).write_bytes(data)
                    return [
                        (
                            filename,
                            "linphone: the keepalive it sends once registered "
                            "(keepalive_period 1 s)",
                            len(data),
                        )
                    ]
    print("linphone sent no CRLF keepalive")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    netlab.cleanup_stale()
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(args.stacks)) as pool:
        results = list(pool.map(lambda stack: capture_stack(stack, args.out), args.stacks))
        if "linphone" in args.stacks:
            results.append(capture_linphone_keepalive(args.out))
    written = [entry for result in results for entry in result]
    for name, _, size in written:
        print(f"{name}: {size} bytes")
    manifest = [
        "# Answers captured by tests/lab/capture_stacks.py in the NAT lab from real stacks",
        "# as shipped (tests/lab/stacks.py says how each one runs).",
        "# file: stack: request",
    ]
    manifest += [f"{name}: {what} ({size} bytes)" for name, what, size in sorted(written)]
    (args.out / "MANIFEST-stacks.txt").write_text("\n".join(manifest) + "\n")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
