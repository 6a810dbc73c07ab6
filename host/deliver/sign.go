package deliver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signing schemes a Sign may name.
const (
	// SchemeHMACSHA256Hex is a lower-case hex HMAC-SHA256 of a templated
	// message, as OpenVidu Meet signs its webhooks.
	SchemeHMACSHA256Hex = "hmac-sha256-hex"
	// SchemeStandardWebhooks is Standard Webhooks' symmetric v1 signature.
	SchemeStandardWebhooks = "standard-webhooks"
)

const (
	defaultSignatureHeader = "X-Signature"
	defaultTimestampHeader = "X-Timestamp"
	defaultTemplate        = "{timestamp}.{body}"
	whsecPrefix            = "whsec_"
)

func validateSign(s *Sign) error {
	if s == nil {
		return nil
	}
	if s.Secret == "" {
		return errors.New("sign: no secret name")
	}
	switch s.Scheme {
	case SchemeHMACSHA256Hex:
		for _, h := range []string{s.Header, s.TimestampHeader} {
			if h != "" && !isToken(h) {
				return fmt.Errorf("sign: invalid header name %q", h)
			}
		}
		if s.Timestamp != "" {
			if _, err := strconv.ParseUint(s.Timestamp, 10, 64); err != nil {
				return fmt.Errorf("sign: timestamp %q is not a decimal number", s.Timestamp)
			}
		}
	case SchemeStandardWebhooks:
		// Its headers and message format are fixed by the specification;
		// silently ignoring overrides would produce surprising signatures.
		if s.Header != "" || s.TimestampHeader != "" || s.Template != "" || s.Timestamp != "" {
			return errors.New("sign: standard-webhooks takes no header, template or timestamp overrides")
		}
	default:
		return fmt.Errorf("sign: unknown scheme %q (want %q or %q)", s.Scheme, SchemeHMACSHA256Hex, SchemeStandardWebhooks)
	}
	return nil
}

// SignRequest sets on h the signature headers that d.Sign asks for, keyed by
// secret. now is the attempt time (standard-webhooks signs it; the default
// hmac-sha256-hex timestamp is d.CreatedAt instead, so retries repeat the
// same signature). It does nothing when d.Sign is nil.
//
// For standard-webhooks, a secret starting with "whsec_" is base64-decoded
// after the prefix, as the specification's libraries do; any other secret
// is used as raw key bytes.
func SignRequest(h http.Header, d *Delivery, secret []byte, now time.Time) error {
	s := d.Sign
	if s == nil {
		return nil
	}
	if err := validateSign(s); err != nil {
		return err
	}
	if len(secret) == 0 {
		return fmt.Errorf("sign: secret %q is empty", s.Secret)
	}
	switch s.Scheme {
	case SchemeHMACSHA256Hex:
		ts := s.Timestamp
		if ts == "" {
			ts = strconv.FormatInt(d.CreatedAt.UnixMilli(), 10)
		}
		// One pass over the template: text substituted in (the body) is
		// never scanned for placeholders itself.
		msg := strings.NewReplacer("{timestamp}", ts, "{body}", string(d.Body)).Replace(orDefault(s.Template, defaultTemplate))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(msg))
		h.Set(orDefault(s.Header, defaultSignatureHeader), hex.EncodeToString(mac.Sum(nil)))
		h.Set(orDefault(s.TimestampHeader, defaultTimestampHeader), ts)
	case SchemeStandardWebhooks:
		key := secret
		if rest, ok := bytes.CutPrefix(secret, []byte(whsecPrefix)); ok {
			var err error
			if key, err = base64.StdEncoding.DecodeString(string(rest)); err != nil {
				return fmt.Errorf("sign: secret %q: whsec_ value is not base64: %w", s.Secret, err)
			}
		}
		id := orDefault(d.IdempotencyKey, d.ID)
		ts := strconv.FormatInt(now.Unix(), 10)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(d.Body)
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
