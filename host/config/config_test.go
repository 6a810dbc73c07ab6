package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := Load("", false, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		LiveKitURL: "http://127.0.0.1:7880", APIKey: "devkey", APISecret: "secret",
		MeetNameID: "openviduMeet", S3Bucket: "openvidu", S3Subbucket: "openvidu-meet",
		Listen: "127.0.0.1:6080", AdminListen: "127.0.0.1:6081", StoreDir: "data", DataDir: "./data", PluginsFile: "./plugins.yaml",
		MaxBodyBytes: 1 << 20, ClockLeeway: 0, LogLevel: "info", LogFormat: "auto", LockGCInterval: 30 * time.Minute,
	}
	got := *c
	got.Keys = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if len(c.Keys) != 1 || c.Keys["devkey"] != "secret" {
		t.Errorf("keys = %v, want only devkey", c.Keys)
	}
}

func TestFileThenEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lkedge.yaml")
	yaml := "LIVEKIT_URL: wss://lk.example.com/\nLKEDGE_LISTEN: 127.0.0.1:7000\nLKEDGE_MAX_BODY_BYTES: 4096\nMEET_NAME_ID: fromfile\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, true, env(map[string]string{"MEET_NAME_ID": "fromenv", "LIVEKIT_KEYS": "k2: s2, k3:s3"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.LiveKitURL != "https://lk.example.com" || c.Listen != "127.0.0.1:7000" || c.MaxBodyBytes != 4096 {
		t.Errorf("file values not applied: %+v", c)
	}
	if c.MeetNameID != "fromenv" {
		t.Errorf("environment must override the file: MeetNameID = %q", c.MeetNameID)
	}
	if len(c.Keys) != 3 || c.Keys["k2"] != "s2" || c.Keys["k3"] != "s3" || c.Keys["devkey"] != "secret" {
		t.Errorf("keys = %v", c.Keys)
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), false, env(nil)); err != nil {
		t.Errorf("an absent default file is fine: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), true, env(nil)); err == nil {
		t.Error("a named file that does not exist must be an error")
	}
}

func TestInvalidNamesTheKey(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want string // the message must name this
	}{
		{"bad url scheme", "", map[string]string{"LIVEKIT_URL": "ftp://x"}, "LIVEKIT_URL"},
		{"url without host", "", map[string]string{"LIVEKIT_URL": "http://"}, "LIVEKIT_URL"},
		{"empty key", "", map[string]string{"LIVEKIT_API_KEY": ""}, "LIVEKIT_API_KEY"},
		{"bad keys list", "", map[string]string{"LIVEKIT_KEYS": "k1 s1"}, "LIVEKIT_KEYS"},
		{"duplicate key in list", "", map[string]string{"LIVEKIT_KEYS": "a: 1, a: 2"}, "LIVEKIT_KEYS"},
		{"api key with other secret in list", "", map[string]string{"LIVEKIT_KEYS": "devkey: other"}, "LIVEKIT_KEYS"},
		{"bucket", "", map[string]string{"MEET_S3_BUCKET": "Not_A_Bucket"}, "MEET_S3_BUCKET"},
		{"subbucket slash", "", map[string]string{"MEET_S3_SUBBUCKET": "/x"}, "MEET_S3_SUBBUCKET"},
		{"listen", "", map[string]string{"LKEDGE_LISTEN": "6080"}, "LKEDGE_LISTEN"},
		{"listen port", "", map[string]string{"LKEDGE_LISTEN": ":99999"}, "LKEDGE_LISTEN"},
		{"s3 endpoint", "", map[string]string{"LKEDGE_STORE": "s3", "MEET_S3_SERVICE_ENDPOINT": "localhost:9000"}, "MEET_S3_SERVICE_ENDPOINT"},
		{"s3 half credentials", "", map[string]string{"LKEDGE_STORE": "s3", "MEET_S3_ACCESS_KEY": "a"}, "MEET_S3_SECRET_KEY"},
		{"s3 path style", "", map[string]string{"MEET_S3_WITH_PATH_STYLE_ACCESS": "sometimes"}, "MEET_S3_WITH_PATH_STYLE_ACCESS"},
		{"store scheme", "", map[string]string{"LKEDGE_STORE": "/var/data"}, "LKEDGE_STORE"},
		{"body limit", "", map[string]string{"LKEDGE_MAX_BODY_BYTES": "10"}, "LKEDGE_MAX_BODY_BYTES"},
		{"body limit nan", "", map[string]string{"LKEDGE_MAX_BODY_BYTES": "lots"}, "LKEDGE_MAX_BODY_BYTES"},
		{"leeway", "", map[string]string{"LKEDGE_CLOCK_LEEWAY": "-1s"}, "LKEDGE_CLOCK_LEEWAY"},
		{"plugin concurrency negative", "", map[string]string{"LKEDGE_PLUGIN_CONCURRENCY": "-1"}, "LKEDGE_PLUGIN_CONCURRENCY"},
		{"plugin concurrency nan", "", map[string]string{"LKEDGE_PLUGIN_CONCURRENCY": "all"}, "LKEDGE_PLUGIN_CONCURRENCY"},
		{"log level", "", map[string]string{"LKEDGE_LOG_LEVEL": "loud"}, "LKEDGE_LOG_LEVEL"},
		{"unknown file key", "LIVEKIT_SECRET: x\n", nil, "LIVEKIT_SECRET"},
		{"nested file value", "LIVEKIT_KEYS:\n  a: b\n", nil, "LIVEKIT_KEYS"},
		{"file value from file is named", "MEET_S3_BUCKET: A\n", nil, "config file"},
		{"not yaml", "::: [", nil, "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = filepath.Join(t.TempDir(), "lkedge.yaml")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path, true, env(tt.env))
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestS3(t *testing.T) {
	c, err := Load("", false, env(map[string]string{
		"LKEDGE_STORE": "s3", "MEET_S3_SERVICE_ENDPOINT": "http://127.0.0.1:9000", "MEET_S3_ACCESS_KEY": "ak",
		"MEET_S3_SECRET_KEY": "sk", "MEET_S3_WITH_PATH_STYLE_ACCESS": "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := S3{Endpoint: "http://127.0.0.1:9000", AccessKey: "ak", SecretKey: "sk", Region: "us-east-1", PathStyle: false}
	if c.S3 == nil || *c.S3 != want || c.StoreDir != "" {
		t.Errorf("S3 = %+v, StoreDir %q", c.S3, c.StoreDir)
	}
	if c, _ := Load("", false, env(nil)); c.S3 != nil {
		t.Error("the default store is the file store")
	}
}

func TestConsul(t *testing.T) {
	c, err := Load("", false, env(map[string]string{"LKEDGE_COORDINATOR": "consul", "CONSUL_HTTP_ADDR": "10.0.0.5:8500", "CONSUL_HTTP_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Consul == nil || *c.Consul != (Consul{Addr: "10.0.0.5:8500", Token: "tok", Prefix: "lkedge/"}) || c.LockGCInterval != 30*time.Minute {
		t.Errorf("Consul = %+v, LockGCInterval %s", c.Consul, c.LockGCInterval)
	}
	if c, _ := Load("", false, env(nil)); c.Consul != nil {
		t.Error("the default coordinator is in-process")
	}
	for k, v := range map[string]string{"LKEDGE_COORDINATOR": "zookeeper", "LKEDGE_REPLICA_ID": "a/b", "LKEDGE_LOCK_GC_INTERVAL": "1ms"} {
		if _, err := Load("", false, env(map[string]string{k: v})); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: error %v does not name the key", k, v, err)
		}
	}
}

func TestLeewayAndFormats(t *testing.T) {
	c, err := Load("", false, env(map[string]string{"LKEDGE_CLOCK_LEEWAY": "30s", "LKEDGE_LOG_FORMAT": "json", "LIVEKIT_URL": "ws://lk:7880"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClockLeeway != 30*time.Second || c.LogFormat != "json" || c.LiveKitURL != "http://lk:7880" {
		t.Errorf("got %+v", c)
	}
}

// TestExposure: what has no real authentication stays off the network. The
// admin API needs a token anywhere but loopback; the webhook listener with
// the public development key accepted defaults to loopback and refuses
// anything else unless the operator allows it by name.
func TestExposure(t *testing.T) {
	const token = "0123456789abcdef0123"
	prod := map[string]string{"LIVEKIT_API_KEY": "prodkey", "LIVEKIT_API_SECRET": "a-real-secret"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		env    map[string]string
		listen string   // the resulting Listen when accepted
		want   []string // parts of the refusal; nil = accepted
	}{
		{"dev key, default listen: loopback", nil, "127.0.0.1:6080", nil},
		{"own key, default listen: all interfaces", prod, ":6080", nil},
		{"dev key on all interfaces", with(nil, "LKEDGE_LISTEN", ":6080"), "",
			[]string{"LKEDGE_LISTEN (from environment)", `":6080"`, "devkey/secret", "LKEDGE_ALLOW_DEV_KEYS=true"}},
		{"dev key on 0.0.0.0", with(nil, "LKEDGE_LISTEN", "0.0.0.0:6080"), "", []string{"LKEDGE_LISTEN"}},
		{"dev key on ::", with(nil, "LKEDGE_LISTEN", "[::]:6080"), "", []string{"LKEDGE_LISTEN"}},
		{"dev key on v4-mapped any", with(nil, "LKEDGE_LISTEN", "[::ffff:0.0.0.0]:6080"), "", []string{"LKEDGE_LISTEN"}},
		{"dev key on a private address", with(nil, "LKEDGE_LISTEN", "10.0.0.5:6080"), "", []string{"LKEDGE_LISTEN"}},
		{"dev key on a name", with(nil, "LKEDGE_LISTEN", "lkedge.example.com:6080"), "", []string{"LKEDGE_LISTEN"}},
		{"dev key on a name ending in localhost", with(nil, "LKEDGE_LISTEN", "evil-localhost:6080"), "", []string{"LKEDGE_LISTEN"}},
		{"dev key among LIVEKIT_KEYS", with(prod, "LIVEKIT_KEYS", "devkey: secret", "LKEDGE_LISTEN", ":6080"), "", []string{"LKEDGE_LISTEN", "devkey/secret"}},
		{"dev key allowed by name", with(nil, "LKEDGE_LISTEN", ":6080", "LKEDGE_ALLOW_DEV_KEYS", "true"), ":6080", nil},
		{"dev key allowed, default listen", with(nil, "LKEDGE_ALLOW_DEV_KEYS", "true"), ":6080", nil},
		{"bad LKEDGE_ALLOW_DEV_KEYS", with(nil, "LKEDGE_ALLOW_DEV_KEYS", "maybe"), "", []string{"LKEDGE_ALLOW_DEV_KEYS"}},
		{"dev key on 127.0.0.1", with(nil, "LKEDGE_LISTEN", "127.0.0.1:7000"), "127.0.0.1:7000", nil},
		{"dev key on 127.8.9.10", with(nil, "LKEDGE_LISTEN", "127.8.9.10:7000"), "127.8.9.10:7000", nil},
		{"dev key on localhost", with(nil, "LKEDGE_LISTEN", "localhost:7000"), "localhost:7000", nil},
		{"dev key on ::1", with(nil, "LKEDGE_LISTEN", "[::1]:7000"), "[::1]:7000", nil},
		{"devkey with another secret is not the dev key", with(nil, "LIVEKIT_API_SECRET", "not-the-dev-one", "LKEDGE_LISTEN", ":6080"), ":6080", nil},
		{"admin on all interfaces without a token", with(prod, "LKEDGE_ADMIN_LISTEN", ":6081"), "",
			[]string{"LKEDGE_ADMIN_LISTEN (from environment)", `":6081"`, "LKEDGE_ADMIN_TOKEN"}},
		{"admin on 0.0.0.0 without a token", with(prod, "LKEDGE_ADMIN_LISTEN", "0.0.0.0:6081"), "", []string{"LKEDGE_ADMIN_LISTEN"}},
		{"admin on a private address without a token", with(prod, "LKEDGE_ADMIN_LISTEN", "10.0.0.5:6081"), "", []string{"LKEDGE_ADMIN_LISTEN"}},
		{"admin on a name without a token", with(prod, "LKEDGE_ADMIN_LISTEN", "admin.internal:6081"), "", []string{"LKEDGE_ADMIN_LISTEN"}},
		{"admin on all interfaces with a token", with(prod, "LKEDGE_ADMIN_LISTEN", ":6081", "LKEDGE_ADMIN_TOKEN", token), ":6080", nil},
		{"admin token too short", with(prod, "LKEDGE_ADMIN_TOKEN", "short"), "", []string{"LKEDGE_ADMIN_TOKEN", "16 characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("", false, env(tt.env))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.Listen != tt.listen {
					t.Errorf("Listen = %q, want %q", c.Listen, tt.listen)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted (Listen %q, AdminListen %q)", c.Listen, c.AdminListen)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "a-real-secret") {
				t.Errorf("error echoes a secret: %v", err)
			}
		})
	}
	// A file is named as the source, so the operator knows where to look.
	path := filepath.Join(t.TempDir(), "lkedge.yaml")
	if err := os.WriteFile(path, []byte("LKEDGE_ADMIN_LISTEN: 0.0.0.0:6081\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, true, env(nil)); err == nil || !strings.Contains(err.Error(), "LKEDGE_ADMIN_LISTEN (from config file "+path+")") {
		t.Errorf("error %v does not name the file as the source", err)
	}
}

// TestErrorMessages: an invalid value is answered with what is expected,
// in words, and a value from a file names the file.
func TestErrorMessages(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the default ./plugins.yaml is absent, which is fine
	file := filepath.Join(dir, "conf.yaml")
	if err := os.WriteFile(file, []byte("LKEDGE_LOCK_GC_INTERVAL: weekly\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		env  map[string]string
		want string
	}{
		{"", map[string]string{"LKEDGE_MAX_BODY_BYTES": "abc"}, `invalid LKEDGE_MAX_BODY_BYTES (from environment): must be a whole number of bytes from 1024 to 67108864 (64 MiB), got "abc"`},
		{"", map[string]string{"LKEDGE_CLOCK_LEEWAY": "soon"}, `invalid LKEDGE_CLOCK_LEEWAY (from environment): must be a duration such as 30s, 5m or 1h30m, got "soon"`},
		{"", map[string]string{"MEET_S3_WITH_PATH_STYLE_ACCESS": "sometimes"}, `invalid MEET_S3_WITH_PATH_STYLE_ACCESS (from environment): must be true or false, got "sometimes"`},
		{file, nil, `invalid LKEDGE_LOCK_GC_INTERVAL (from config file ` + file + `): must be a duration such as 30s, 5m or 1h30m, got "weekly"`},
		{"", map[string]string{"LKEDGE_PLUGINS": filepath.Join(dir, "plugns.yaml")}, `invalid LKEDGE_PLUGINS (from environment): ` + filepath.Join(dir, "plugns.yaml") + ` does not exist (leave it unset to run without plugins)`},
	} {
		_, err := Load(tc.file, tc.file != "", env(tc.env))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Load(%s, %v) error:\n %v\nwant\n %s", tc.file, tc.env, err, tc.want)
		}
	}
	// Named and present, it is taken.
	plugins := filepath.Join(dir, "plugins.yaml")
	if err := os.WriteFile(plugins, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load("", false, env(map[string]string{"LKEDGE_PLUGINS": plugins})); err != nil || c.PluginsFile != plugins {
		t.Errorf("existing LKEDGE_PLUGINS: %v, %v", c, err)
	}
}
