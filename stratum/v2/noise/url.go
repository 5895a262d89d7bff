package noise

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// URLScheme is the scheme of an encrypted SV2 pool URL.
const URLScheme = "stratum2+tcp"

// FormatURL gives stratum2+tcp://HOST:PORT/AUTHORITY_KEY.
func FormatURL(hostPort string, key AuthorityKey) string {
	return (&url.URL{Scheme: URLScheme, Host: hostPort, Path: "/" + key.String()}).String()
}

// ParseURL splits a stratum2+tcp URL into the address to dial and the authority key
// that the server's certificate must be signed by.
func ParseURL(s string) (hostPort string, key AuthorityKey, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", key, fmt.Errorf("noise: url: %w", err)
	}
	if u.Scheme != URLScheme {
		return "", key, fmt.Errorf("noise: url scheme %q, want %q", u.Scheme, URLScheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", key, fmt.Errorf("noise: url %q has parts other than host, port and key", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return "", key, fmt.Errorf("noise: url %q needs HOST:PORT", s)
	}
	k, ok := strings.CutPrefix(u.Path, "/")
	if !ok || k == "" || strings.Contains(k, "/") {
		return "", key, fmt.Errorf("noise: url %q needs the authority key as its path", s)
	}
	if key, err = ParseAuthorityKey(k); err != nil {
		return "", key, err
	}
	return u.Host, key, nil
}
