"""The client's address, for the rate limits and the audit log: the one place that decides it.

The TCP peer is the client, unless the peer is one of `GLIOSCOPE_TRUSTED_PROXIES` (the ingress
controller). Then X-Forwarded-For is read from the right, skipping trusted proxies: the first address
that is not one is the client (what the nearest trusted proxy saw). Everything to its left was sent by
the client and is never believed. uvicorn runs with `--no-proxy-headers`, so `request.client` is the
real peer and nothing else rewrites it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from starlette.requests import Request

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.0/8", "192.0.2.7", "fd00::/8"]` → networks (a bare address is a /32 or /128)."""
    return tuple(ip_network(entry.strip(), strict=False) for entry in entries)


def _address(value: str) -> Address | None:
    """An address from a peer or an X-Forwarded-For hop (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`,
    `::ffff:1.2.3.4`); None when it is not one."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1:value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The client's address given the TCP peer, the X-Forwarded-For header lines (in order) and the
    trusted proxies."""
    if peer is None:
        return None
    nearest = _address(peer)
    if nearest is None or not _trusted(nearest, trusted):
        return str(nearest) if nearest is not None else peer
    hops = [hop for line in forwarded_for for hop in line.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # not an address where a trusted proxy should have written one: stop at the last known hop
        if not _trusted(address, trusted):
            return str(address)
        nearest = address
    return str(nearest)


def request_scheme(request: Request) -> str:
    """The scheme the client used: X-Forwarded-Proto from a trusted proxy (TLS ends at the ingress),
    else the connection's own."""
    trusted = getattr(request.app.state, "trusted_proxies", ())
    peer = _address(request.client.host) if request.client else None
    forwarded = (request.headers.get("x-forwarded-proto") or "").split(",")[-1].strip().lower()
    if peer is not None and _trusted(peer, trusted) and forwarded in ("http", "https"):
        return forwarded
    return request.url.scheme


def request_client_address(request: Request) -> str | None:
    """The client's address for this request (computed once; the trusted proxies are the app's
    `state.trusted_proxies`, set by create_app)."""
    cached = request.scope.get("glioscope.client_address", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    trusted = getattr(request.app.state, "trusted_proxies", ())
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)
    request.scope["glioscope.client_address"] = address
    return address
