package market

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/hashgrid/hashgrid"
)

// A buyer names the host and port the market connects to. Left unchecked, that makes
// the market a port scanner into the operator's own network: loopback services, the
// LAN, cloud metadata at 169.254.169.254. So, unless the operator allows private
// destinations, a destination must resolve only to public unicast addresses, checked
// when the order is placed and again at every dial (a name may resolve elsewhere
// later: DNS rebinding), and the market dials the very address it checked. What a
// dial found is logged; the buyer hears only that the destination is unreachable.

// errDestRefused is what a buyer hears about a destination the policy refuses or that
// does not resolve: one message, so that it tells nothing about the operator's network.
var errDestRefused = hashgrid.Errorf(hashgrid.EINVALID, "pool_url: the host does not resolve to a public address")

// reasonUnreachable is an order's pause reason for every failed dial or handshake.
const reasonUnreachable = "destination unreachable or refused the connection (check pool_url, pool_user and pool_password)"

// nonPublic lists ranges that netip's predicates do not cover and that no public pool
// lives in (RFC 6890 special-purpose registries).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("100::/64"),       // discard-only
}

// embeddedV4 returns the IPv4 address that NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
// addresses carry, which is where a packet to them ends up.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case netip.MustParsePrefix("2002::/16").Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// publicAddr reports whether a is a public unicast address: not loopback, private,
// link-local, multicast, unspecified or another special-purpose range.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() ||
		a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	if v4, ok := embeddedV4(a); ok {
		return publicAddr(v4)
	}
	return true
}

// resolveDest returns the address to dial for a destination URL. Every address the
// host resolves to must pass the policy (a name that also points inside is refused
// whole), and the first one is dialled, so that nothing resolves the name again
// between the check and the dial. The error carries the detail for the log only.
func (m *Market) resolveDest(ctx context.Context, rawURL string) (string, error) {
	hp, err := destHostPort(rawURL)
	if err != nil {
		return "", err
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", fmt.Errorf("destination %q: %w", rawURL, err)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, m.cfg.UpstreamTimeout)
		addrs, err = m.cfg.Resolver(rctx, host)
		cancel()
		if err != nil {
			return "", fmt.Errorf("destination %s: resolve: %w", host, err)
		}
		if len(addrs) == 0 {
			return "", fmt.Errorf("destination %s: resolves to no address", host)
		}
	}
	if !m.cfg.AllowPrivateDestinations {
		for _, a := range addrs {
			if !publicAddr(a) {
				return "", fmt.Errorf("destination %s: %s is not a public address (--allow-private-destinations allows it)", host, a)
			}
		}
	}
	return net.JoinHostPort(addrs[0].Unmap().String(), port), nil
}

// checkDestPolicy is the placement-time check: the buyer gets errDestRefused, the log
// gets why.
func (m *Market) checkDestPolicy(ctx context.Context, rawURL string) error {
	if _, err := m.resolveDest(ctx, rawURL); err != nil {
		m.log.Info("destination refused", "err", err)
		return errDestRefused
	}
	return nil
}

func defaultResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
