package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

func TestParseAllowlistRejectsBadEntries(t *testing.T) {
	tests := []struct {
		entry string
		want  string // part of the reason
	}{
		{"hooks.slack.com", "scheme must be http or https"},
		{"ftp://files.example.com", "scheme must be http or https"},
		{"https:hooks.example.com", "missing // after the scheme"},
		{"https://user:pw@hooks.example.com", "userinfo is not allowed"},
		{"https://hooks.example.com/services/T0", "paths are not allowed"},
		{"https://hooks.example.com?x=1", "queries are not allowed"},
		{"https://hooks.example.com?", "queries are not allowed"},
		{"https://hooks.example.com#frag", "fragments are not allowed"},
		{"https://", "missing host"},
		{"https://:8443", "missing host"},
		{"https://hooks.example.com:0", "invalid port"},
		{"https://hooks.example.com:70000", "invalid port"},
		{"https://hooks.example.com:https", "invalid port"},
		{"https://api.*.example.com", "only allowed as a leading"},
		{"https://**.example.com", "only allowed as a leading"},
		{"https://*.com", "at least two labels"},
		{"https://*.", "only allowed as a leading"},
		{"https://a..example.com", "invalid host name"},
		{"http://127.1", "numeric label"},
		{"https://*.0.0.1", "numeric label"},
		{"http://10.0.0.256", "numeric label"},
		{"https://bücher.example", "punycode"},
		{"http://[fe80::1%25eth0]:80", "zones"},
		{"https://" + strings.Repeat("a", 64) + ".example.com", "invalid host name"},
		{"http://%zz", "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			_, err := ParseAllowlist([]string{"https://ok.example.com", tt.entry})
			if err == nil {
				t.Fatalf("ParseAllowlist(%q) succeeded, want error", tt.entry)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.entry)) {
				t.Errorf("error %q does not name the entry", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	entries := []string{
		"https://hooks.slack.com",
		"https://*.example.com",
		"http://127.0.0.1:8080",
		"http://localhost:5080",
		"https://api.example.org:8443/",
		"HTTPS://Upper.Example.NET.",
		"http://[::1]:9000",
	}
	a, err := ParseAllowlist(entries)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://hooks.slack.com/services/T/B/secret", true},
		{"https://hooks.slack.com:443/x", true},
		{"https://HOOKS.SLACK.COM./x", true},
		{"http://hooks.slack.com/x", false},           // scheme differs
		{"https://hooks.slack.com:8443/x", false},     // port differs
		{"https://evil.hooks.slack.com/x", false},     // no wildcard on that entry
		{"https://a.example.com/", true},              // one label
		{"https://a.b.example.com/", true},            // several labels
		{"https://example.com/", false},               // the bare domain is not a subdomain
		{"https://badexample.com/", false},            // suffix without a dot boundary
		{"https://.example.com/", false},              // an empty label is not a subdomain
		{"https://a.example.com.evil.net/", false},    // example.com not at the end
		{"https://a.example.com:444/", false},         // wildcard keeps the port
		{"http://127.0.0.1:8080/hook", true},          // IP literal
		{"http://127.0.0.1/hook", false},              // default port 80 is not 8080
		{"http://[::ffff:127.0.0.1]:8080/hook", true}, // v4-mapped is the same address
		{"http://127.0.0.2:8080/hook", false},         // another loopback address
		{"http://localhost:5080/", true},              // name
		{"http://127.0.0.1:5080/", false},             // "localhost" does not vouch for an IP literal
		{"https://api.example.org:8443/v1?q=1", true}, // path and query of the URL do not matter
		{"https://api.example.org/v1", false},         // default port is not 8443
		{"https://upper.example.net/x", true},         // entry was canonicalised
		{"http://[::1]:9000/", true},                  // IPv6 literal
		{"http://[0:0:0:0:0:0:0:1]:9000/", true},      // same address, other spelling
		{"ftp://hooks.slack.com/", false},             // scheme not http(s)
		{"https://hooks.slack.com:99999/", false},     // unparsable port
		{"/relative/path", false},                     // no host
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := a.Check(mustURL(t, tt.url))
			if tt.ok {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.url, err)
				}
				return
			}
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("Check(%s) = %v, want ErrNotAllowed", tt.url, err)
			}
		})
	}
}

func TestCheckMessageAndNil(t *testing.T) {
	a, err := ParseAllowlist([]string{"https://hooks.slack.com"})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Check(mustURL(t, "https://evil.com/steal?token=x"))
	want := `destination "https://evil.com:443" is not in the plugin's allow-list`
	if err == nil || err.Error() != want {
		t.Errorf("Check error = %v, want %q", err, want)
	}
	if err := a.Check(nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Check(nil) = %v, want ErrNotAllowed", err)
	}
	var none *Allowlist
	if err := none.Check(mustURL(t, "https://hooks.slack.com")); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("nil allow-list Check = %v, want ErrNotAllowed", err)
	}
	if resp, err := none.Client().Get("http://127.0.0.1:1/"); !errors.Is(err, ErrNotAllowed) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Errorf("nil allow-list Client().Get = %v, want ErrNotAllowed", err)
	}
	empty, err := ParseAllowlist(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Check(mustURL(t, "https://hooks.slack.com")); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("empty allow-list Check = %v, want ErrNotAllowed", err)
	}
}

func TestOrigin(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://Hooks.Slack.com/services/secret", "https://hooks.slack.com:443"},
		{"http://example.com", "http://example.com:80"},
		{"http://example.com.:8080/x", "http://example.com:8080"},
		{"http://[::1]/x", "http://[::1]:80"},
		{"HTTP://127.0.0.1:5080", "http://127.0.0.1:5080"},
	}
	for _, tt := range tests {
		if got := Origin(mustURL(t, tt.in)); got != tt.want {
			t.Errorf("Origin(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Origin(nil); got != "" {
		t.Errorf("Origin(nil) = %q, want empty", got)
	}
}

func TestForbiddenClassification(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"192.168.1.1", "private"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"169.254.169.254", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.254", "carrier-grade NAT"},
		{"100.128.0.1", ""},
		{"8.8.8.8", ""},
		{"172.32.0.1", ""},
		{"2606:4700::1111", ""},
		{"2001:4860:4860::8888", ""},
		{"::ffff:8.8.8.8", ""}, // dialled as 8.8.8.8
		// Other metadata services, public-looking or inside ranges an
		// operator may open for store values.
		{"192.0.0.192", "cloud metadata"},
		{"100.100.100.200", "cloud metadata"},
		{"169.254.170.2", "cloud metadata"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"::ffff:a9fe:a9fe", "cloud metadata"},
		// IPv4 inside IPv6 forms that reach (or translate to) an internal
		// address: never unwrapped as public.
		{"64:ff9b::a9fe:a9fe", "not global unicast (NAT64 of 169.254.169.254)"},
		{"64:ff9b::7f00:1", "not global unicast (NAT64 of 127.0.0.1)"},
		{"64:ff9b::808:808", "not global unicast (NAT64 of 8.8.8.8)"},
		{"64:ff9b:1::a00:1", "not global unicast"},
		{"2002:a9fe:a9fe::", "special-purpose 2002::/16 (6to4 of 169.254.169.254)"},
		{"2002:7f00:1::1", "special-purpose 2002::/16 (6to4 of 127.0.0.1)"},
		{"::7f00:1", "not global unicast (IPv4-compatible 127.0.0.1)"},
		{"::a9fe:a9fe", "not global unicast (IPv4-compatible 169.254.169.254)"},
		{"::ffff:0:7f00:1", "not global unicast"},
		{"2001::1", "special-purpose 2001::/23"}, // Teredo
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "special-purpose 2001::/23"},
		{"2001:db8::1", "special-purpose 2001:db8::/32"}, // documentation
		{"3fff::1", "special-purpose 3fff::/20"},
		{"fec0::1", "not global unicast"}, // deprecated site-local
		{"100::1", "not global unicast"},  // discard-only
		{"5f00::1", "not global unicast"}, // SRv6 SIDs
		{"ff0e::1", "multicast"},
		// IPv4 special-purpose blocks beyond private and loopback.
		{"192.0.0.1", "special-purpose 192.0.0.0/24"},
		{"192.0.2.1", "special-purpose 192.0.2.0/24"},
		{"192.88.99.1", "special-purpose 192.88.99.0/24"},
		{"198.18.0.1", "special-purpose 198.18.0.0/15"},
		{"198.19.255.254", "special-purpose 198.18.0.0/15"},
		{"198.20.0.1", ""},
		{"198.51.100.7", "special-purpose 198.51.100.0/24"},
		{"203.0.113.9", "special-purpose 203.0.113.0/24"},
		{"240.0.0.1", "special-purpose 240.0.0.0/4"},
		{"255.255.255.254", "special-purpose 240.0.0.0/4"},
		{"255.255.255.255", "broadcast"},
		{"::ffff:255.255.255.255", "broadcast"},
		{"239.255.255.250", "multicast"},
	}
	for _, tt := range tests {
		if got := forbidden(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("forbidden(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

// staticResolver answers every lookup with addrs, simulating DNS that points
// a public-looking name wherever the test wants (rebinding included).
func staticResolver(addrs ...string) Resolver {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		out := make([]netip.Addr, len(addrs))
		for i, a := range addrs {
			out[i] = netip.MustParseAddr(a)
		}
		return out, nil
	}
}

func TestClientDialGuard(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	port := mustURL(t, srv.URL).Port()
	at := func(host string) string { return "http://" + host + ":" + port }

	tests := []struct {
		name     string
		entries  []string
		resolver Resolver
		url      string
		want     error  // nil = the request reaches the server
		mention  string // part of the error text
	}{
		{name: "loopback IP named explicitly", entries: []string{at("127.0.0.1")}, url: at("127.0.0.1") + "/hook"},
		{name: "v4-mapped spelling of a named IP", entries: []string{at("127.0.0.1")}, url: at("[::ffff:127.0.0.1]") + "/hook"},
		{name: "localhost named explicitly", entries: []string{at("localhost")},
			resolver: staticResolver("127.0.0.1"), url: at("localhost") + "/hook"},
		{name: "localhost entry only vouches for loopback: private answer dropped, loopback used",
			entries: []string{at("localhost")}, resolver: staticResolver("10.1.2.3", "127.0.0.1"), url: at("localhost")},
		{name: "localhost resolving only to a private address", entries: []string{at("localhost")},
			resolver: staticResolver("192.168.1.1"), url: at("localhost"), want: ErrForbiddenAddress, mention: "192.168.1.1 (private)"},
		{name: "public name rebinding to loopback", entries: []string{at("hooks.example.com")},
			resolver: staticResolver("127.0.0.1"), url: at("hooks.example.com"), want: ErrForbiddenAddress, mention: "127.0.0.1 (loopback)"},
		{name: "public name rebinding to metadata", entries: []string{at("hooks.example.com")},
			resolver: staticResolver("169.254.169.254"), url: at("hooks.example.com"), want: ErrForbiddenAddress, mention: "cloud metadata"},
		{name: "wildcard name rebinding to IPv6 loopback", entries: []string{"http://*.example.com:" + port},
			resolver: staticResolver("::1"), url: at("a.example.com"), want: ErrForbiddenAddress, mention: "::1 (loopback)"},
		{name: "every answer forbidden", entries: []string{at("hooks.example.com")},
			resolver: staticResolver("10.0.0.1", "100.64.1.1", "fd00:ec2::254"), url: at("hooks.example.com"), want: ErrForbiddenAddress,
			mention: "10.0.0.1 (private), 100.64.1.1 (carrier-grade NAT), fd00:ec2::254 (cloud metadata)"},
		{name: "not in the allow-list even without Check", entries: []string{at("127.0.0.1")},
			url: "http://127.0.0.1:1/hook", want: ErrNotAllowed, mention: `"http://127.0.0.1:1"`},
		{name: "named IP on another port does not vouch", entries: []string{"http://127.0.0.1:1"},
			url: at("127.0.0.1"), want: ErrNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.resolver != nil {
				opts = append(opts, WithResolver(tt.resolver))
			}
			a, err := ParseAllowlist(tt.entries, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, tt.url, strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := a.Client().Do(req)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if string(body) != "ok" {
					t.Fatalf("body %q, want ok", body)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Do succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Do error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// TestClientRefusesSpecialPurposeForms drives every hostile spelling of an
// internal address through the real client and dialer: a public name whose
// DNS answer is that address is refused before any connection, and the
// error says why.
func TestClientRefusesSpecialPurposeForms(t *testing.T) {
	forms := []struct{ ip, why string }{
		{"64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"},
		{"64:ff9b::7f00:1", "NAT64 of 127.0.0.1"},
		{"2002:a9fe:a9fe::", "6to4 of 169.254.169.254"},
		{"::7f00:1", "IPv4-compatible 127.0.0.1"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"192.0.0.192", "cloud metadata"},
		{"198.18.0.1", "special-purpose 198.18.0.0/15"},
		{"240.0.0.1", "special-purpose 240.0.0.0/4"},
		{"255.255.255.255", "broadcast"},
		{"2001::a9fe:a9fe", "special-purpose 2001::/23"},
		{"fec0::1", "not global unicast"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"100.64.0.1", "carrier-grade NAT"},
	}
	for _, f := range forms {
		t.Run(f.ip, func(t *testing.T) {
			a, err := ParseAllowlist([]string{"https://hooks.example.com"}, WithResolver(staticResolver(f.ip)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://hooks.example.com/hook", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := a.Client().Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("request went out, want it refused")
			}
			if !errors.Is(err, ErrForbiddenAddress) {
				t.Fatalf("error %v, want ErrForbiddenAddress", err)
			}
			if want := netip.MustParseAddr(f.ip).Unmap().String() + " ("; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), f.why) {
				t.Errorf("error %q does not name %s and %q", err, f.ip, f.why)
			}
		})
	}
}

func TestPermits(t *testing.T) {
	a, err := ParseAllowlist([]string{
		"http://169.254.169.254", "http://[fd00:ec2::254]:8080", "http://localhost:5080", "https://*.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		port uint16
		ip   string
		want bool
	}{
		{"169.254.169.254", 80, "169.254.169.254", true},
		{"169.254.169.254", 81, "169.254.169.254", false}, // the entry names port 80
		{"fd00:ec2::254", 8080, "fd00:ec2::254", true},
		{"localhost", 5080, "127.0.0.1", true},
		{"localhost", 5080, "::1", true},
		{"localhost", 5080, "10.0.0.1", false}, // localhost vouches for loopback only
		{"localhost", 5081, "127.0.0.1", false},
		{"a.example.com", 443, "127.0.0.1", false}, // names never vouch for forbidden addresses
		{"a.example.com", 443, "169.254.169.254", false},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		if got := a.permits(tt.host, tt.port, ip, forbidden(ip)); got != tt.want {
			t.Errorf("permits(%s, %d, %s) = %v, want %v", tt.host, tt.port, tt.ip, got, tt.want)
		}
	}
}

func TestRestrictedEntry(t *testing.T) {
	tests := []struct {
		url   string
		reach Reach
		want  string // "" = an error
	}{
		{"https://Hooks.Example.com/path?secret=1", ReachPublic, "public:https://hooks.example.com:443"},
		{"http://127.0.0.1:6081/dlq/replay", ReachPublic, "public:http://127.0.0.1:6081"},
		{"http://localhost:5080/webhook", ReachPrivate, "private:http://localhost:5080"},
		{"http://[::1]:9000/", ReachPrivate, "private:http://[::1]:9000"},
		{"ftp://files.example.com/", ReachPublic, ""},
		{"/relative", ReachPublic, ""},
		{"http://*.example.com/", ReachPublic, ""}, // one host, never a wildcard
		{"http://user@hooks.example.com/", ReachPublic, "public:http://hooks.example.com:80"},
		{"https://hooks.example.com/", Reach(7), ""},
		{"http://2852039166/", ReachPublic, ""}, // 169.254.169.254 as one number
		{"http://169.254.43518/", ReachPublic, ""},
		{"http://[::ffff:a9fe:a9fe]/", ReachPrivate, "private:http://[::ffff:a9fe:a9fe]:80"}, // parsed, then refused at dial
	}
	for _, tt := range tests {
		got, err := RestrictedEntry(mustURL(t, tt.url), tt.reach)
		if tt.want == "" {
			if err == nil {
				t.Errorf("RestrictedEntry(%s, %d) = %q, want an error", tt.url, tt.reach, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("RestrictedEntry(%s, %d) = %q, %v, want %q", tt.url, tt.reach, got, err, tt.want)
		}
		if _, err := ParseAllowlist([]string{got}); err != nil {
			t.Errorf("ParseAllowlist(%q): %v", got, err)
		}
	}
	if _, err := ParseAllowlist([]string{"public:https://*.example.com"}); err == nil || !strings.Contains(err.Error(), "not a wildcard") {
		t.Errorf("a restricted wildcard parsed: %v", err)
	}
	// One prefix, once: a second one is not a scheme.
	for _, stacked := range []string{"public:private:http://10.0.0.1", "private:public:http://10.0.0.1", "private:private:http://10.0.0.1"} {
		if _, err := ParseAllowlist([]string{stacked}); err == nil || !strings.Contains(err.Error(), "scheme must be http or https") {
			t.Errorf("ParseAllowlist(%q) = %v, want a scheme error", stacked, err)
		}
	}
}

// TestClientRestrictedEntries: an entry derived from a store value never
// vouches for the address it names. Through the real client and dialer, a
// public: entry reaches no loopback, private or metadata address, however
// spelled; a private: entry reaches loopback and private addresses and
// still no link-local or metadata one.
func TestClientRestrictedEntries(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	port := mustURL(t, srv.URL).Port()
	at := func(host string) string { return "http://" + host + ":" + port }

	tests := []struct {
		name     string
		entries  []string
		resolver Resolver
		url      string
		mention  string // "" = the request reaches the server
	}{
		{name: "public: loopback literal", entries: []string{"public:" + at("127.0.0.1")}, url: at("127.0.0.1"), mention: "127.0.0.1 (loopback)"},
		{name: "public: v4-mapped loopback", entries: []string{"public:" + at("[::ffff:127.0.0.1]")}, url: at("[::ffff:127.0.0.1]"), mention: "127.0.0.1 (loopback)"},
		{name: "public: localhost", entries: []string{"public:" + at("localhost")}, resolver: staticResolver("127.0.0.1"), url: at("localhost"), mention: "127.0.0.1 (loopback)"},
		{name: "public: name resolving to private", entries: []string{"public:" + at("app.internal")}, resolver: staticResolver("10.1.2.3"), url: at("app.internal"), mention: "10.1.2.3 (private)"},
		{name: "public: metadata literal", entries: []string{"public:http://169.254.169.254:" + port}, url: "http://169.254.169.254:" + port, mention: "cloud metadata"},
		{name: "private: v4-mapped metadata literal", entries: []string{"private:http://[::ffff:a9fe:a9fe]:" + port}, url: "http://[::ffff:a9fe:a9fe]:" + port, mention: "169.254.169.254 (cloud metadata)"},
		{name: "private: 6to4 of loopback", entries: []string{"private:http://[2002:7f00:1::]:" + port}, url: "http://[2002:7f00:1::]:" + port, mention: "6to4 of 127.0.0.1"},
		{name: "private: loopback literal", entries: []string{"private:" + at("127.0.0.1")}, url: at("127.0.0.1") + "/hook"},
		{name: "private: localhost", entries: []string{"private:" + at("localhost")}, resolver: staticResolver("127.0.0.1"), url: at("localhost") + "/hook"},
		{name: "private: name resolving to metadata", entries: []string{"private:" + at("app.internal")}, resolver: staticResolver("169.254.169.254"), url: at("app.internal"), mention: "cloud metadata"},
		{name: "private: AWS IPv6 metadata inside the ULA range", entries: []string{"private:" + at("app.internal")}, resolver: staticResolver("fd00:ec2::254"), url: at("app.internal"), mention: "fd00:ec2::254 (cloud metadata)"},
		{name: "private: link-local", entries: []string{"private:" + at("app.internal")}, resolver: staticResolver("169.254.1.1"), url: at("app.internal"), mention: "169.254.1.1 (link-local)"},
		{name: "private: NAT64 of loopback", entries: []string{"private:" + at("app.internal")}, resolver: staticResolver("64:ff9b::7f00:1"), url: at("app.internal"), mention: "NAT64 of 127.0.0.1"},
		{name: "private: carrier-grade NAT", entries: []string{"private:" + at("app.internal")}, resolver: staticResolver("100.64.0.1"), url: at("app.internal"), mention: "carrier-grade NAT"},
		{name: "private: entry for another host vouches for nothing here", entries: []string{"private:" + at("other.internal"), "public:" + at("app.internal")},
			resolver: staticResolver("127.0.0.1"), url: at("app.internal"), mention: "127.0.0.1 (loopback)"},
		{name: "private: entry on another port vouches for nothing here", entries: []string{"private:http://127.0.0.1:1", "public:" + at("127.0.0.1")},
			url: at("127.0.0.1"), mention: "127.0.0.1 (loopback)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.resolver != nil {
				opts = append(opts, WithResolver(tt.resolver))
			}
			a, err := ParseAllowlist(tt.entries, opts...)
			if err != nil {
				t.Fatal(err)
			}
			before := hits.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, tt.url, strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := a.Client().Do(req)
			if tt.mention == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				resp.Body.Close()
				if hits.Load() != before+1 {
					t.Fatalf("the server saw %d requests, want 1", hits.Load()-before)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatal("request went out, want it refused")
			}
			if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %v, want ErrForbiddenAddress mentioning %q", err, tt.mention)
			}
			if hits.Load() != before {
				t.Errorf("the server saw the refused request")
			}
		})
	}
}

// TestOwnListenersUnreachable: lkedge's own listeners are no destination,
// even for an entry that names them explicitly, on the listener's address
// and, for one on all interfaces, on every local address; released, the
// address is an ordinary one again.
func TestOwnListenersUnreachable(t *testing.T) {
	var hits atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "replayed")
	})
	admin := httptest.NewServer(handler) // stands for the admin API on 127.0.0.1
	t.Cleanup(admin.Close)
	port := mustURL(t, admin.URL).Port()

	ln, err := net.Listen("tcp", ":0") // stands for LKEDGE_LISTEN=:6080
	if err != nil {
		t.Fatal(err)
	}
	all := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
	all.Start()
	t.Cleanup(all.Close)
	allPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	targets := []struct{ entry, url string }{
		{"http://127.0.0.1:" + port, "http://127.0.0.1:" + port + "/dlq/replay?since=2000-01-01T00:00:00Z"},
		{"private:http://localhost:" + port, "http://localhost:" + port + "/dlq/replay"},
		{"http://127.0.0.1:" + allPort, "http://127.0.0.1:" + allPort + "/livekit/webhook"},
		{"http://[::1]:" + allPort, "http://[::1]:" + allPort + "/livekit/webhook"},
	}
	if ip := localNonLoopback(t); ip.IsValid() {
		u := "http://" + net.JoinHostPort(ip.String(), allPort)
		targets = append(targets, struct{ entry, url string }{u, u + "/livekit/webhook"})
	}
	send := func(entry, target string) error {
		a, err := ParseAllowlist([]string{entry}, WithResolver(staticResolver("127.0.0.1")))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
		resp, err := a.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	releaseAdmin := ProtectListener(admin.Listener.Addr())
	releaseAll := ProtectListener(ln.Addr())
	for _, tt := range targets {
		err := send(tt.entry, tt.url)
		if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), "lkedge's own listener") {
			t.Errorf("%s: error %v, want ErrForbiddenAddress naming lkedge's own listener", tt.url, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("own listeners saw %d requests", n)
	}
	releaseAdmin()
	releaseAll()
	releaseAll() // twice is harmless
	if err := send(targets[0].entry, targets[0].url); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("after release the listener saw %d requests, want 1", hits.Load())
	}
}

// localNonLoopback is an address of this host's interfaces that is not
// loopback, if it has one.
func localNonLoopback(t *testing.T) netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Logf("interface addresses: %v", err)
		return netip.Addr{}
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// TestDialGuardLetsNamedAddressThrough shows that an explicitly named
// forbidden-range address gets a real connection attempt (which fails here:
// nothing routes to that ULA address), not a refusal.
func TestDialGuardLetsNamedAddressThrough(t *testing.T) {
	a, err := ParseAllowlist([]string{"http://[fd00::1]"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	conn, err := a.dial(ctx, "tcp", "[fd00::1]:80")
	if conn != nil {
		conn.Close()
	}
	if errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("dial refused an explicitly named address: %v", err)
	}
	// The same address under a name that resolves to it is refused.
	b, err := ParseAllowlist([]string{"http://ula.example.com"}, WithResolver(staticResolver("fd00::1")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.dial(ctx, "tcp", "ula.example.com:80"); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("dial via name = %v, want ErrForbiddenAddress", err)
	}
}

func TestClientRedirects(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/end", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "end")
	})
	mux.HandleFunc("/to-end", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/end", http.StatusFound)
	})
	mux.HandleFunc("/to-evil", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://evil.example.com/collect", http.StatusFound)
	})
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
	})
	// /chain/N redirects N more times before landing on /end.
	mux.HandleFunc("/chain/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n <= 1 {
			http.Redirect(w, r, "/end", http.StatusFound)
			return
		}
		http.Redirect(w, r, "/chain/"+strconv.Itoa(n-1), http.StatusFound)
	})

	a, err := ParseAllowlist([]string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    error
		mention string
	}{
		{path: "/to-end"},
		{path: "/chain/5"},
		{path: "/chain/6", mention: "stopped after 5 redirects"},
		{path: "/to-evil", want: ErrNotAllowed, mention: `egress: redirect: destination "http://evil.example.com:80"`},
		{path: "/to-metadata", want: ErrNotAllowed, mention: `egress: redirect: destination "http://169.254.169.254:80"`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := a.Client().Get(srv.URL + tt.path)
			if tt.mention == "" {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				defer resp.Body.Close()
				if resp.Request.URL.Path != "/end" {
					t.Fatalf("ended at %s, want /end", resp.Request.URL.Path)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatal("Get succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}
