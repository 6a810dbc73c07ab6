// Package egress decides where a plugin's outbound HTTP requests may go.
//
// Plugins name their destinations in an allow-list. Matching a URL against
// that list is not enough on its own: a public-looking hostname can resolve
// (or re-resolve, between a check and the connect) to a loopback, private or
// cloud-metadata address and turn the host into a proxy for its own network.
// Client therefore resolves every host itself, classifies each address with
// code.dny.dev/ssrf (IANA's special-purpose registries), refuses internal
// ones unless the operator's allow-list names them explicitly, and connects
// to the very address it checked. Entries derived from values someone other
// than the operator controls (RestrictedEntry) vouch for no address, and
// lkedge's own listeners (ProtectListener) are never a destination.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.dny.dev/ssrf"
)

// ErrNotAllowed is wrapped by every error about a destination that no
// allow-list entry matches, so callers can treat it as final (retrying cannot
// help) with errors.Is.
var ErrNotAllowed = errors.New("not in the plugin's allow-list")

// ErrForbiddenAddress is wrapped by every error about a destination that
// resolved to an address the allow-list does not name explicitly (loopback,
// private, link-local, metadata, ...), so callers can treat it as final.
var ErrForbiddenAddress = errors.New("forbidden address")

// maxRedirects matches what a plugin can reasonably need while bounding the
// work one delivery can cause.
const maxRedirects = 5

// Resolver looks up the addresses of host. It exists so tests can simulate a
// public name resolving to an internal address.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// Option configures an Allowlist.
type Option func(*Allowlist)

// WithResolver replaces the system resolver used by Client's dial guard.
func WithResolver(r Resolver) Option {
	return func(a *Allowlist) {
		if r != nil {
			a.resolve = r
		}
	}
}

// entry is one parsed allow-list entry.
type entry struct {
	scheme   string
	host     string     // lower case, no trailing dot; for a wildcard, the part after "*."
	wildcard bool       // host matches one or more labels in front of host
	addr     netip.Addr // valid when host is an IP literal
	port     uint16
	reach    Reach // 0 for an entry the operator wrote
}

// Reach bounds the addresses a restricted entry may connect to. An entry
// the operator wrote vouches for the addresses it names (an IP literal,
// localhost); an entry derived from a value someone else can change (a URL
// read from the metadata store, which OpenVidu Meet's admin API edits)
// vouches for none, and reaches only what its Reach says.
type Reach int

const (
	// ReachPublic allows only public addresses.
	ReachPublic Reach = iota + 1
	// ReachPrivate also allows loopback and private addresses (RFC 1918,
	// IPv6 unique local), for a value the operator trusts to point into
	// the local network. Link-local, metadata, every other special-purpose
	// address and lkedge's own listeners stay refused.
	ReachPrivate
)

// reachPrefix is how a restricted entry is written, so that it survives in
// the outbox's stored allow-lists as text.
var reachPrefix = map[Reach]string{ReachPublic: "public:", ReachPrivate: "private:"}

// RestrictedEntry returns the allow-list entry for u's origin that
// ParseAllowlist reads as restricted to reach: "public:https://host:port"
// or "private:http://host:port". u must be an absolute http or https URL.
func RestrictedEntry(u *url.URL, reach Reach) (string, error) {
	prefix, ok := reachPrefix[reach]
	if !ok {
		return "", fmt.Errorf("egress: unknown reach %d", reach)
	}
	if u == nil || u.Hostname() == "" || (!strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https")) {
		return "", errors.New("egress: a restricted entry needs an absolute http or https URL")
	}
	raw := prefix + Origin(u)
	if _, err := parseEntry(raw); err != nil {
		return "", fmt.Errorf("egress: allow-list entry %q: %w", raw, err)
	}
	return raw, nil
}

// Allowlist is a plugin's allowed destinations. A nil or empty Allowlist
// allows nothing.
type Allowlist struct {
	entries []entry
	resolve Resolver

	once      sync.Once
	transport *http.Transport
}

// ParseAllowlist parses entries of the form scheme://host[:port], for
// example "https://hooks.slack.com", "https://*.example.com",
// "http://127.0.0.1:8080" or "https://[::1]:8443". The scheme must be http
// or https and the port defaults to the scheme's. A leading "*." matches one
// or more subdomain labels (not the bare domain). Paths (other than a lone
// "/"), queries, fragments and userinfo are rejected, because an entry that
// looks narrower than what it actually allows would mislead whoever reviews
// it. The error names the offending entry.
func ParseAllowlist(entries []string, opts ...Option) (*Allowlist, error) {
	a := &Allowlist{resolve: systemResolver}
	for _, o := range opts {
		o(a)
	}
	for _, raw := range entries {
		e, err := parseEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("egress: allow-list entry %q: %w", raw, err)
		}
		a.entries = append(a.entries, e)
	}
	return a, nil
}

func parseEntry(raw string) (entry, error) {
	raw = strings.TrimSpace(raw)
	var reach Reach
	if rest, ok := strings.CutPrefix(raw, reachPrefix[ReachPublic]); ok {
		reach, raw = ReachPublic, rest
	} else if rest, ok := strings.CutPrefix(raw, reachPrefix[ReachPrivate]); ok {
		reach, raw = ReachPrivate, rest
	}
	u, err := url.Parse(raw)
	if err != nil {
		return entry{}, fmt.Errorf("not a URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return entry{}, errors.New("scheme must be http or https (write e.g. https://hooks.example.com)")
	}
	switch {
	case u.Opaque != "":
		return entry{}, errors.New("missing // after the scheme")
	case u.User != nil:
		return entry{}, errors.New("userinfo is not allowed")
	case u.Path != "" && u.Path != "/":
		return entry{}, errors.New("paths are not allowed: an entry names an origin")
	case u.RawQuery != "" || u.ForceQuery:
		return entry{}, errors.New("queries are not allowed")
	case u.Fragment != "":
		return entry{}, errors.New("fragments are not allowed")
	case u.Hostname() == "":
		return entry{}, errors.New("missing host")
	}
	port, err := portOf(scheme, u.Port())
	if err != nil {
		return entry{}, err
	}
	e := entry{scheme: scheme, port: port, reach: reach}
	host := canonicalHost(u.Hostname())
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return entry{}, errors.New("IPv6 zones are not allowed")
		}
		e.addr = ip.Unmap()
		e.host = e.addr.String()
		return e, nil
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		if reach != 0 {
			return entry{}, errors.New("a restricted entry names one host, not a wildcard")
		}
		e.wildcard = true
		host = rest
	}
	if err := validHostname(host); err != nil {
		return entry{}, err
	}
	if e.wildcard && !strings.Contains(host, ".") {
		return entry{}, errors.New("a wildcard needs at least two labels after \"*.\" (e.g. *.example.com)")
	}
	e.host = host
	return e, nil
}

// validHostname accepts DNS names in ASCII; internationalised names must be
// written in punycode so that what is matched is what is resolved. A name
// ending in a numeric label is refused: no TLD is numeric, and such names
// look like (or, as "127.1", resolve as) IP addresses, so an IP literal can
// never match a name entry.
func validHostname(h string) error {
	if len(h) > 253 {
		return errors.New("host name too long")
	}
	if last := h[strings.LastIndexByte(h, '.')+1:]; strings.Trim(last, "0123456789") == "" && last != "" {
		return fmt.Errorf("host name %q ends in a numeric label: write an IP address in full", h)
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("invalid host name %q", h)
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				if c == '*' {
					return errors.New("a wildcard is only allowed as a leading \"*.\"")
				}
				return fmt.Errorf("invalid character %q in host name (use punycode for non-ASCII names)", c)
			}
		}
	}
	return nil
}

func canonicalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func portOf(scheme, p string) (uint16, error) {
	if p == "" {
		if scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("invalid port %q", p)
	}
	return uint16(n), nil
}

// Origin returns u's origin in the canonical form "scheme://host:port" (lower
// case, default port made explicit, IPv6 in brackets), the unit that
// allow-lists match and that deliverers use to key circuit breakers. It
// never includes the path, which may carry a secret (Slack-style hook URLs).
func Origin(u *url.URL) string {
	if u == nil {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	host := canonicalHost(u.Hostname())
	if port == "" {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Check reports whether u's scheme, host and port match an entry. The error
// wraps ErrNotAllowed and names the destination's origin.
func (a *Allowlist) Check(u *url.URL) error {
	if u == nil {
		return fmt.Errorf("destination is missing: %w", ErrNotAllowed)
	}
	if a != nil && a.match(u) {
		return nil
	}
	return fmt.Errorf("destination %q is %w", Origin(u), ErrNotAllowed)
}

func (a *Allowlist) match(u *url.URL) bool {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return false
	}
	port, err := portOf(scheme, u.Port())
	if err != nil {
		return false
	}
	host := canonicalHost(u.Hostname())
	ip, ipErr := netip.ParseAddr(host)
	for _, e := range a.entries {
		if e.scheme != scheme || e.port != port {
			continue
		}
		switch {
		case e.addr.IsValid():
			if ipErr == nil && ip.Zone() == "" && ip.Unmap() == e.addr {
				return true
			}
		case e.wildcard:
			if prefix, ok := strings.CutSuffix(host, "."+e.host); ok && prefix != "" {
				return true
			}
		case host == e.host:
			return true
		}
	}
	return false
}

// permits reports whether the allow-list lets ip, classified forbidden for
// why, be dialled for host:port. An entry the operator wrote must name ip
// explicitly (or be localhost, for loopback); a ReachPrivate entry for this
// host and port lets loopback and private addresses through, nothing else.
// It ignores the scheme: RoundTrip has already matched the full URL, and
// the transport never mixes schemes on one connection key.
func (a *Allowlist) permits(host string, port uint16, ip netip.Addr, why string) bool {
	for _, e := range a.entries {
		if e.port != port {
			continue
		}
		switch e.reach {
		case 0:
			if e.addr.IsValid() && e.addr == ip {
				return true
			}
			if !e.wildcard && e.host == "localhost" && host == "localhost" && ip.IsLoopback() {
				return true
			}
		case ReachPrivate:
			named := e.addr.IsValid() && e.addr == ip || !e.addr.IsValid() && e.host == host
			if named && (why == whyLoopback || why == whyPrivate) {
				return true
			}
		}
	}
	return false
}

var (
	cgnat   = netip.MustParsePrefix("100.64.0.0/10")
	thisNet = netip.MustParsePrefix("0.0.0.0/8") // Linux connects these to the local host
	// metadata are cloud instance-metadata services (AWS, GCP, Azure,
	// AWS's ECS task and IPv6 endpoints, Alibaba, Oracle). Some sit in
	// ranges an operator may open (private, CGNAT), so they are named
	// first and stay refused whatever else is opened.
	metadata = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("169.254.170.2"),
		netip.MustParseAddr("fd00:ec2::254"),
		netip.MustParseAddr("100.100.100.200"),
		netip.MustParseAddr("192.0.0.192"),
	}
	broadcast = netip.MustParseAddr("255.255.255.255")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	v4compat  = netip.MustParsePrefix("::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")

	// guardian is code.dny.dev/ssrf's classifier, generated from IANA's
	// IPv4 and IPv6 special-purpose address registries: it decides; the
	// names above only make the refusal readable. Ports and networks are
	// the allow-list's business, not its.
	guardian = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())
)

// The classes a ReachPrivate entry opens; every other reason stays final.
const (
	whyLoopback = "loopback"
	whyPrivate  = "private"
)

// forbidden returns why ip must not be dialed unless named explicitly, or ""
// if it is an ordinary public address. An IPv4-mapped address is judged as
// the IPv4 address it is dialled as; every other way of carrying IPv4 in
// IPv6 (NAT64, 6to4, IPv4-compatible, Teredo) is refused, since the
// embedded address could be anything.
func forbidden(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case slices.Contains(metadata, ip):
		return "cloud metadata"
	case ip.IsLoopback():
		return whyLoopback
	case ip.IsUnspecified() || thisNet.Contains(ip):
		return "unspecified"
	case ip.IsPrivate():
		return whyPrivate
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast():
		return "multicast"
	case ip == broadcast:
		return "broadcast"
	case cgnat.Contains(ip):
		return "carrier-grade NAT"
	}
	if guardian.SafeAddr(ip) == nil {
		return ""
	}
	if ip.Is4() {
		for _, p := range ssrf.IPv4DeniedPrefixes {
			if p.Contains(ip) {
				return "special-purpose " + p.String()
			}
		}
		return "special-purpose"
	}
	why := "not global unicast"
	for _, p := range ssrf.IPv6DeniedPrefixes {
		if p.Contains(ip) {
			why = "special-purpose " + p.String()
			break
		}
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		why += " (NAT64 of " + netip.AddrFrom4([4]byte(b[12:])).String() + ")"
	case sixToFour.Contains(ip):
		why += " (6to4 of " + netip.AddrFrom4([4]byte(b[2:6])).String() + ")"
	case v4compat.Contains(ip):
		why += " (IPv4-compatible " + netip.AddrFrom4([4]byte(b[12:])).String() + ")"
	}
	return why
}

// own holds lkedge's listening addresses with a count each (tests run
// several services in one process).
var own struct {
	sync.Mutex
	addrs map[netip.AddrPort]int
}

// ProtectListener marks addr, one of lkedge's own listeners, as never a
// destination: no plugin request connects to it, whatever the allow-list
// says, so a plugin (or whoever edits its store-sourced URL) cannot drive
// the admin API or feed the webhook port. A listener on 0.0.0.0 or :: is
// reached through every local address, so its port is refused on all of
// them. Call the returned function when the listener closes.
func ProtectListener(addr net.Addr) (release func()) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return func() {}
	}
	ap := tcp.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	own.Lock()
	if own.addrs == nil {
		own.addrs = map[netip.AddrPort]int{}
	}
	own.addrs[ap]++
	own.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			own.Lock()
			if own.addrs[ap]--; own.addrs[ap] <= 0 {
				delete(own.addrs, ap)
			}
			own.Unlock()
		})
	}
}

// ownListener reports whether dialling ip:port would reach one of the
// listeners given to ProtectListener: the listener's own address, or, on
// its port, any loopback, unspecified or local interface address (erring
// towards refusal where a listener on a specific address shares its port
// with something else on this host).
func ownListener(ip netip.Addr, port uint16) bool {
	own.Lock()
	onPort := false
	for ap := range own.addrs {
		if ap.Port() != port {
			continue
		}
		if ap.Addr() == ip {
			own.Unlock()
			return true
		}
		onPort = true
	}
	own.Unlock()
	if !onPort {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: fail closed
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if local, ok := netip.AddrFromSlice(n.IP); ok && local.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

func systemResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// dial resolves addr's host once, keeps only the addresses the allow-list
// permits, and connects to one of those very addresses, so a DNS answer that
// changes between check and connect cannot redirect the connection.
func (a *Allowlist) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("egress: dial %s: %w", addr, err)
	}
	host = canonicalHost(host)
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("egress: dial %s: invalid port: %w", addr, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = a.resolve(ctx, host); err != nil {
		return nil, fmt.Errorf("egress: resolve %s: %w", host, err)
	}
	var allowed []netip.Addr
	var refused []string
	for _, ip := range ips {
		ip = ip.Unmap()
		if ownListener(ip, uint16(port)) {
			refused = append(refused, fmt.Sprintf("%s (lkedge's own listener)", netip.AddrPortFrom(ip, uint16(port))))
			continue
		}
		if why := forbidden(ip); why != "" && !a.permits(host, uint16(port), ip, why) {
			refused = append(refused, fmt.Sprintf("%s (%s)", ip, why))
			continue
		}
		allowed = append(allowed, ip)
	}
	if len(allowed) == 0 {
		if len(refused) == 0 {
			return nil, fmt.Errorf("egress: resolve %s: no addresses", host)
		}
		return nil, fmt.Errorf("egress: %s resolves to %s, which the allow-list does not permit: %w",
			host, strings.Join(refused, ", "), ErrForbiddenAddress)
	}
	var d net.Dialer
	var errs []error
	for _, ip := range allowed {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("egress: dial %s: %w", addr, errors.Join(errs...))
}

// guardedTransport checks every request, not only redirects, so that a
// caller who forgets Check still cannot leave the allow-list.
type guardedTransport struct {
	a    *Allowlist
	base http.RoundTripper
}

// RoundTrip refuses requests outside the allow-list before any dial.
func (t guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.a.Check(req.URL); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close the body even on error
		}
		return nil, err
	}
	return t.base.RoundTrip(req)
}

// Client returns an *http.Client restricted to this allow-list: every
// request and redirect target is checked against it (at most 5 redirects),
// and connections go only to addresses the dial guard accepted. No proxy is
// used, since a proxy would connect on our behalf past the guard. The
// clients returned share one connection pool. Timeouts are left to the
// request's context.
func (a *Allowlist) Client() *http.Client {
	if a == nil {
		a = &Allowlist{resolve: systemResolver}
	}
	a.once.Do(func() {
		a.transport = &http.Transport{
			Proxy:             nil,
			DialContext:       a.dial,
			ForceAttemptHTTP2: true,
			MaxIdleConns:      100,
			// Go's default of 2 idle connections per host would make the
			// outbox's concurrent sends to one destination dial anew.
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	})
	return &http.Client{
		Transport: guardedTransport{a: a, base: a.transport},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("egress: stopped after %d redirects", maxRedirects)
			}
			if err := a.Check(req.URL); err != nil {
				return fmt.Errorf("egress: redirect: %w", err)
			}
			return nil
		},
	}
}
