package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/lkedge/lkedge/host/internal/proccpu"
	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/store"
	"github.com/lkedge/lkedge/host/store/storetest"
)

func newStore(t testing.TB, srv *testserver.S3, bucket string, mutate func(*Options)) (*Store, error) {
	opts := Options{
		Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Region: "us-east-1", PathStyle: true, Bucket: bucket, ProbePrefix: "openvidu-meet/",
	}
	if mutate != nil {
		mutate(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return New(ctx, opts)
}

// TestContract runs the storage contract the file backend also passes
// against a real S3 server, so the two cannot drift.
func TestContract(t *testing.T) {
	srv := testserver.StartS3(t)
	srv.CreateBucket(t, "contract")
	s, err := newStore(t, srv, "contract", nil)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(*testing.T) store.Store { return s })
}

func TestStartupErrors(t *testing.T) {
	srv := testserver.StartS3(t)
	srv.CreateBucket(t, "exists")
	tests := []struct {
		name   string
		bucket string
		mutate func(*Options)
		want   string
	}{
		{"missing bucket", "nope", nil, `bucket "nope" does not exist`},
		{"wrong secret", "exists", func(o *Options) { o.SecretKey = "wrong-secret" }, `bucket "exists" refuses the credentials`},
		{"unknown access key", "exists", func(o *Options) { o.AccessKey = "nobody" }, `bucket "exists" refuses the credentials`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newStore(t, srv, tt.bucket, tt.mutate)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := newStore(t, srv, "exists", nil); err != nil {
		t.Fatalf("the right settings must work: %v", err)
	}
}

// TestServerRestart: while the server is down, operations fail after their
// retries with an error naming bucket and key; once it is back, they work
// again without a new client.
func TestServerRestart(t *testing.T) {
	srv := testserver.StartS3(t)
	srv.CreateBucket(t, "restart")
	s, err := newStore(t, srv, "restart", func(o *Options) { o.InitialBackoff = 20 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "openvidu-meet/k.json", []byte(`{"a":1}`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err = s.Put(ctx, "openvidu-meet/k.json", []byte(`{"a":2}`), store.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "restart/openvidu-meet/k.json") {
		t.Fatalf("write to a stopped server: %v", err)
	}
	if errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an outage must not look like a condition: %v", err)
	}
	srv.Start()
	obj, err := s.Get(ctx, "openvidu-meet/k.json")
	if err != nil || string(obj.Body) != `{"a":1}` {
		t.Fatalf("after restart: %q, %v", obj.Body, err)
	}
}

// BenchmarkPut measures the metadata write path of the Meet logic against
// a real S3 server, with this process's CPU per write (cpu-ns/op; the
// server runs apart): "cas" is what saveRecording does when it has no ETag
// of its own (read the object, then write it with If-Match); "blind" is a
// plain overwrite, the reference's write, as the baseline in the same run;
// "signed" is that overwrite as one request signed by aws-sdk-go-v2's own
// SigV4 signer and sent through net/http, without the SDK's operation
// stack: the floor under "blind", so that the stack's share of an event's
// CPU is measured rather than guessed.
func BenchmarkPut(b *testing.B) {
	srv := testserver.StartS3(b)
	srv.CreateBucket(b, "bench")
	s, err := newStore(b, srv, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := []byte(`{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"ACTIVE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568}`)
	key := func(i int) string {
		return fmt.Sprintf("openvidu-meet/recordings/.metadata/room-123/EG_%d/u.json", i%64)
	}
	cpu := func(b *testing.B, write func(i int) error) {
		cpu0 := proccpu.Used()
		for i := 0; b.Loop(); i++ {
			if err := write(i); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(proccpu.Used()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("blind", func(b *testing.B) {
		cpu(b, func(i int) error {
			_, err := s.Put(ctx, key(i), body, store.PutOptions{})
			return err
		})
	})
	b.Run("cas", func(b *testing.B) {
		cpu(b, func(i int) error {
			obj, err := s.Get(ctx, key(i))
			opts := store.PutOptions{IfNoneMatch: true}
			if err == nil {
				opts = store.PutOptions{IfMatch: obj.ETag}
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			_, err = s.Put(ctx, key(i), body, opts)
			return err
		})
	})
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Run("signed", func(b *testing.B) {
		cpu(b, func(i int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.Endpoint+"/bench/"+key(i), bytes.NewReader(body))
			if err != nil {
				return err
			}
			sum := sha256.Sum256(body)
			payload := hex.EncodeToString(sum[:])
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("X-Amz-Content-Sha256", payload)
			if err := signer.SignHTTP(ctx, creds, req, payload, "s3", "us-east-1", time.Now()); err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
				return fmt.Errorf("signed put: %s, ETag %q", resp.Status, resp.Header.Get("ETag"))
			}
			return nil
		})
	})
}

// TestServerWithoutConditionalWrites: an S3 server that ignores If-None-Match
// and If-Match (a small fake that accepts every write) is refused at
// start-up, so replicas never silently race.
func TestServerWithoutConditionalWrites(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodGet: // ListObjectsV2
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`)
		case http.MethodPut:
			w.Header().Set("ETag", `"0123"`)
		}
	}))
	defer fake.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(ctx, Options{Endpoint: fake.URL, AccessKey: "a", SecretKey: "s", PathStyle: true, Bucket: "ignores-conditions"})
	if err == nil || !strings.Contains(err.Error(), "does not enforce If-None-Match") {
		t.Fatalf("New = %v, want a refusal naming If-None-Match", err)
	}
}
