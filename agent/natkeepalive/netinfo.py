"""Interface addresses and the default route, with `netifaces` when it imports, else the stdlib.

Rules:
- netifaces is archived upstream and gone from OpenWrt's feed: use it, never require it.
- The fallback reads what Linux offers without extra packages: the SIOCGIFADDR ioctl (IPv4),
  /proc/net/if_inet6 (IPv6), socket.if_nameindex (names), /proc/net/route (default route).
  SIOCGIFADDR knows one IPv4 address per interface label, the primary one; netifaces also lists
  secondary addresses after it. Both agree on the first, which is the one a binding uses.
- Nothing here raises for an unknown interface or an unresolvable host: empty list or None.
- Link-local IPv6 addresses are left out: a socket bound to one cannot reach a SIP server.
"""

from __future__ import annotations

from natkeepalive.cstdlib import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

SIOCGIFADDR = 0x8915
IFNAMSIZ = 16
RTF_UP = 0x0001
RTF_REJECT = 0x0200
ROUTE_PATH = "/proc/net/route"
IPV6_ROUTE_PATH = "/proc/net/ipv6_route"
IF_INET6_PATH = "/proc/net/if_inet6"

_netifaces_module: ModuleType | None = None
_netifaces_tried = False


def _netifaces() -> ModuleType | None:
    global _netifaces_module, _netifaces_tried
    if not _netifaces_tried:
        _netifaces_tried = True
        try:
            import netifaces
        except ImportError:
            pass
        else:
            _netifaces_module = netifaces
    return _netifaces_module


def have_netifaces() -> bool:
    return _netifaces() is not None


def _choose(use_netifaces: bool | None) -> ModuleType | None:
    """None: netifaces when available; False: the stdlib path; True: netifaces or ImportError."""
    if use_netifaces is False:
        return None
    module = _netifaces()
    if module is None and use_netifaces:
        raise ImportError("netifaces is not installed")
    return module


def _is_link_local_v6(address: str) -> bool:
    try:
        packed = socket.inet_pton(socket.AF_INET6, address)
    except OSError:
        return False
    return packed[0] == 0xFE and (packed[1] & 0xC0) == 0x80


def _valid_name(name: str) -> bool:
    size = len(name.encode("utf-8", "replace"))
    return 0 < size < IFNAMSIZ and "\0" not in name and "/" not in name


# --- the stdlib path -----------------------------------------------------------------------------


def _ipv4_ioctl(name: str) -> list[str]:
    import fcntl
    import struct

    request = struct.pack(f"{IFNAMSIZ}s24x", name.encode("utf-8"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
    except OSError:  # ENODEV: no such interface; EADDRNOTAVAIL: no IPv4 address on it
        return []
    finally:
        sock.close()  # _socket's sockets are not context managers
    # struct ifreq: the name, then a sockaddr_in (family 2, port 2, address 4)
    return [socket.inet_ntop(socket.AF_INET, reply[IFNAMSIZ + 4 : IFNAMSIZ + 8])]


def _ipv6_proc(name: str, path: str = IF_INET6_PATH) -> list[str]:
    found: list[str] = []
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:  # no IPv6 in this kernel
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[5] != name or len(fields[0]) != 32:
            continue
        try:
            address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0]))
        except ValueError:
            continue
        if not _is_link_local_v6(address) and address not in found:
            found.append(address)
    return found


# --- the netifaces path --------------------------------------------------------------------------


def _addresses_netifaces(module: ModuleType, name: str) -> list[str]:
    try:
        info = module.ifaddresses(name)
    except (ValueError, OSError):  # "You must specify a valid interface name."
        return []
    found: list[str] = []
    for entry in info.get(module.AF_INET, []):
        address = entry.get("addr")
        if isinstance(address, str) and address not in found:
            found.append(address)
    for entry in info.get(module.AF_INET6, []):
        address = entry.get("addr")
        if not isinstance(address, str):
            continue
        address = address.partition("%")[0]  # netifaces appends %scope to link-local ones
        if not _is_link_local_v6(address) and address not in found:
            found.append(address)
    return found


# --- public --------------------------------------------------------------------------------------


def interface_addresses(name: str, use_netifaces: bool | None = None) -> list[str]:
    """IPv4 addresses, then IPv6 addresses that are not link-local; [] for an unknown interface."""
    if not _valid_name(name):
        return []
    module = _choose(use_netifaces)
    if module is not None:
        return _addresses_netifaces(module, name)
    return _ipv4_ioctl(name) + _ipv6_proc(name)


def interface_names(use_netifaces: bool | None = None) -> list[str]:
    module = _choose(use_netifaces)
    if module is not None:
        return [str(name) for name in module.interfaces()]
    try:
        return [name for _, name in socket.if_nameindex()]
    except OSError:
        return []


def ascii_host(host: str) -> str | bytes:
    """The host as getaddrinfo() should get it: CPython runs every str host through the `idna`
    codec, which loads encodings.idna, stringprep and unicodedata into the daemon even
    for `127.0.0.1`; bytes skip that. Non-ASCII names keep the codec."""
    return host.encode("ascii") if host.isascii() else host


def source_address_for(host: str, port: int, family: int = socket.AF_UNSPEC) -> str | None:
    """The local address the kernel would use toward host:port. A UDP connect() only picks a route;
    no packet leaves the machine."""
    try:
        infos = socket.getaddrinfo(ascii_host(host), port, family, socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return None
    for fam, kind, proto, _, sockaddr in infos:
        try:
            sock = socket.socket(fam, kind, proto)
        except OSError:
            continue
        try:
            sock.connect(sockaddr)
            local = sock.getsockname()
        except OSError:  # ENETUNREACH: no route in this family; try the next address
            continue
        finally:
            sock.close()
        return str(local[0])
    return None


def _default_v4(path: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.readlines()[1:]  # a header line first
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            flags, metric = int(fields[3], 16), int(fields[6])
        except ValueError:
            continue
        if (
            fields[1] == "00000000"
            and fields[7] == "00000000"
            and flags & RTF_UP
            and (best is None or metric < best[0])
        ):
            best = (metric, fields[0])
    return best


def _default_v6(path: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            metric, flags = int(fields[5], 16), int(fields[8], 16)
        except ValueError:
            continue
        # the kernel keeps a "::/0 reject" route on lo; it is no way out
        if (
            fields[0] == "0" * 32
            and fields[1] == "00"
            and flags & RTF_UP
            and not flags & RTF_REJECT
            and fields[9] != "lo"
            and (best is None or metric < best[0])
        ):
            best = (metric, fields[9])
    return best


def default_interface(
    route_path: str = ROUTE_PATH, ipv6_route_path: str = IPV6_ROUTE_PATH
) -> str | None:
    """The interface of the IPv4 default route with the lowest metric, else the IPv6 one."""
    found = _default_v4(route_path) or _default_v6(ipv6_route_path)
    return found[1] if found else None
