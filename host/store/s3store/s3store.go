// Package s3store is the S3 backend of lkedge's store: the same contract as
// the file backend, on any S3-compatible server that honours conditional
// writes (If-None-Match: * and If-Match: <etag>), through aws-sdk-go-v2.
package s3store

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lkedge/lkedge/host/store"
)

// Options configures the backend with OpenVidu Meet's setting names.
type Options struct {
	Endpoint  string // MEET_S3_SERVICE_ENDPOINT; empty means AWS itself
	AccessKey string // MEET_S3_ACCESS_KEY; with SecretKey, else the AWS credential chain
	SecretKey string // MEET_S3_SECRET_KEY
	Region    string // MEET_AWS_REGION
	PathStyle bool   // MEET_S3_WITH_PATH_STYLE_ACCESS
	Bucket    string // MEET_S3_BUCKET
	// ProbePrefix is where the start-up check writes and removes its probe
	// object: the sub-bucket, so a policy limited to it is enough.
	ProbePrefix string
	// MaxAttempts and InitialBackoff shape retries of throttling, 5xx and
	// transport errors: the reference makes 5 attempts, 100 ms doubling.
	MaxAttempts    int
	InitialBackoff time.Duration
	// HTTPClient overrides the SDK's HTTP client (tests use it for timeouts).
	HTTPClient *http.Client
}

// Store is an S3 bucket seen through the store contract.
type Store struct {
	client      *s3.Client
	bucket      string
	probePrefix string
}

var _ store.Store = (*Store)(nil)

// contentType is set on every object: lkedge stores JSON documents only.
const contentType = "application/json"

// New connects to the bucket and checks, at start-up rather than later, that
// it exists, that the credentials work and that the server enforces
// conditional writes; without them two replicas could silently race.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = 100 * time.Millisecond
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	loaders := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(opts.Region),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				o.Backoff = doubling{first: opts.InitialBackoff}
				// The default token bucket stops retrying under a burst of
				// errors; lkedge prefers the fixed schedule.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if opts.AccessKey != "" || opts.SecretKey != "" {
		loaders = append(loaders, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, "")))
	}
	var httpClient awsconfig.HTTPClient = opts.HTTPClient
	if opts.HTTPClient == nil {
		// Every pipeline worker may talk to S3 at once; with the default
		// handful of idle connections per host, most requests would dial.
		httpClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = 256
			t.MaxIdleConnsPerHost = 128
		})
	}
	loaders = append(loaders, awsconfig.WithHTTPClient(httpClient))
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		// Checksums only where S3 requires them: S3-compatible servers
		// differ in what trailing checksums they accept.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &Store{client: client, bucket: opts.Bucket, probePrefix: opts.ProbePrefix}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// doubling is the reference's retry schedule (100, 200, 400, 800 ms), with
// ±20 % jitter so replicas do not retry in step.
type doubling struct{ first time.Duration }

func (d doubling) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	base := d.first << (attempt - 1)
	return base + time.Duration((rand.Float64()*0.4-0.2)*float64(base)), nil
}

// check verifies the bucket and the server's conditional writes with a
// probe object, which it removes again.
func (s *Store) check(ctx context.Context) error {
	// ListObjectsV2 rather than HeadBucket: a HEAD answer has no body, so
	// a missing bucket and refused credentials could not be told apart.
	_, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, MaxKeys: aws.Int32(1)})
	var ae smithy.APIError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket":
		return fmt.Errorf("s3: bucket %q does not exist (MEET_S3_BUCKET)", s.bucket)
	case httpStatus(err) == http.StatusForbidden || errors.As(err, &ae) && credentialCodes[ae.ErrorCode()]:
		return fmt.Errorf("s3: bucket %q refuses the credentials (MEET_S3_ACCESS_KEY / MEET_S3_SECRET_KEY): %s", s.bucket, ae.ErrorCode())
	default:
		return fmt.Errorf("s3: bucket %q is not reachable: %w", s.bucket, err)
	}
	key := s.probePrefix + ".lkedge-probe-" + crand.Text()
	defer s.Delete(context.WithoutCancel(ctx), key) //nolint:errcheck // best effort cleanup of the probe
	etag, err := s.Put(ctx, key, []byte(`{}`), store.PutOptions{IfNoneMatch: true})
	if err != nil {
		return fmt.Errorf("s3: cannot write to bucket %q: %w", s.bucket, err)
	}
	if _, err := s.Put(ctx, key, []byte(`{}`), store.PutOptions{IfNoneMatch: true}); !errors.Is(err, store.ErrPrecondition) {
		return fmt.Errorf("s3: the server does not enforce If-None-Match on bucket %q (got %v); lkedge needs conditional writes", s.bucket, err)
	}
	if _, err := s.Put(ctx, key, []byte(`{}`), store.PutOptions{IfMatch: `"0123456789abcdef0123456789abcdef"`}); !errors.Is(err, store.ErrPrecondition) {
		return fmt.Errorf("s3: the server does not enforce If-Match on bucket %q (got %v); lkedge needs conditional writes", s.bucket, err)
	}
	if _, err := s.Put(ctx, key, []byte(`{}`), store.PutOptions{IfMatch: etag}); err != nil {
		return fmt.Errorf("s3: If-Match with the current ETag failed on bucket %q: %w", s.bucket, err)
	}
	return nil
}

// credentialCodes are the S3 error codes that mean the credentials are
// wrong (XAdminUserNotFound is versitygw's for an unknown access key).
var credentialCodes = map[string]bool{
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "AccessDenied": true, "XAdminUserNotFound": true,
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.Object, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		var nk *types.NoSuchKey
		if errors.As(err, &nk) || httpStatus(err) == http.StatusNotFound {
			return store.Object{}, fmt.Errorf("s3 get %s/%s: %w", s.bucket, key, store.ErrNotFound)
		}
		return store.Object{}, fmt.Errorf("s3 get %s/%s: %w", s.bucket, key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return store.Object{}, fmt.Errorf("s3 get %s/%s: read body: %w", s.bucket, key, err)
	}
	return store.Object{Body: body, ETag: aws.ToString(out.ETag), Meta: out.Metadata}, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body []byte, opts store.PutOptions) (string, error) {
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String(contentType),
		Metadata:      opts.Meta,
	}
	if opts.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(opts.IfMatch)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		switch httpStatus(err) {
		case http.StatusPreconditionFailed, http.StatusConflict:
			// 409 is S3's answer to two conditional writes racing; either way
			// the caller must read again and decide.
			return "", fmt.Errorf("s3 put %s/%s: %w", s.bucket, key, store.ErrPrecondition)
		case http.StatusNotFound:
			if opts.IfMatch != "" {
				return "", fmt.Errorf("s3 put %s/%s: %w", s.bucket, key, store.ErrPrecondition)
			}
		}
		return "", fmt.Errorf("s3 put %s/%s: %w", s.bucket, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil && httpStatus(err) != http.StatusNotFound {
		return fmt.Errorf("s3 delete %s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3 list %s/%s: %w", s.bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// httpStatus is the HTTP status of an S3 error, or 0.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return http.StatusPreconditionFailed
	}
	return 0
}
