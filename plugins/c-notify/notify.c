// c-notify is an lkedge plugin written in C from docs/abi.md alone, with no
// C library: it forwards every event it receives, byte for byte, as a JSON
// POST to the URL in its config key "url", with the event's id as the
// Idempotency-Key. Build it as docs/abi.md's "Other languages" shows.

typedef unsigned int u32;
typedef int i32;

#define HOST(name) __attribute__((import_module("lkedge"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

HOST("event_read") i32 event_read(char *buf, u32 size);
HOST("config_get") i32 config_get(const char *key, u32 key_len, char *buf, u32 size);
HOST("action_emit_body") i32 action_emit_body(const char *action, u32 len, const char *body, u32 body_len);
HOST("log") i32 host_log(i32 level, const char *msg, u32 msg_len, const char *attrs, u32 attrs_len);
HOST("fail") i32 host_fail(const char *msg, u32 len);

// The version marker: never called, its name is the ABI version.
EXPORT("lkedge_abi_v1") void lkedge_abi_v1(void) {}

// The linker's end of static data: the event goes above it.
extern unsigned char __heap_base;

// handled counts the events this instance handled: globals live as long as
// the instance, across its events.
static u32 handled;

static char url[2048];
static char action[4096];
static char attrs[512];

static u32 length(const char *s) {
	u32 n = 0;
	while (s[n]) n++;
	return n;
}

static int failed(const char *why) {
	host_fail(why, length(why));
	return 1;
}

// heap returns n bytes above the static data, growing the memory if needed.
static char *heap(u32 n) {
	unsigned long base = (unsigned long)&__heap_base;
	unsigned long have = __builtin_wasm_memory_size(0) * 65536ul;
	if (base + n > have &&
	    __builtin_wasm_memory_grow(0, (base + n - have + 65535) / 65536) == (unsigned long)-1) {
		return 0;
	}
	return (char *)base;
}

static u32 space(const char *j, u32 n, u32 i) {
	while (i < n && (j[i] == ' ' || j[i] == '\t' || j[i] == '\n' || j[i] == '\r')) i++;
	return i;
}

// string returns the index after the JSON string opening at i, or n.
static u32 string(const char *j, u32 n, u32 i) {
	for (i++; i < n; i++) {
		if (j[i] == '\\') i++;
		else if (j[i] == '"') return i + 1;
	}
	return n;
}

// value returns the index after the JSON value starting at i.
static u32 value(const char *j, u32 n, u32 i) {
	if (i < n && j[i] == '"') return string(j, n, i);
	u32 depth = 0;
	while (i < n) {
		char c = j[i];
		if (c == '"') {
			i = string(j, n, i);
			continue;
		}
		if (c == '{' || c == '[') depth++;
		else if (c == '}' || c == ']') {
			if (depth == 0) return i;
			if (--depth == 0) return i + 1;
		} else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r')) return i;
		i++;
	}
	return n;
}

// field finds the top-level string field key of the JSON object j and
// returns its contents as written (still JSON-escaped) in *v, *vn.
static int field(const char *j, u32 n, const char *key, const char **v, u32 *vn) {
	u32 kn = length(key);
	u32 i = space(j, n, 0);
	if (i >= n || j[i] != '{') return 0;
	for (i = space(j, n, i + 1); i < n && j[i] == '"';) {
		u32 end = string(j, n, i);
		int match = end - i - 2 == kn;
		for (u32 k = 0; match && k < kn; k++) match = j[i + 1 + k] == key[k];
		i = space(j, n, end);
		if (i >= n || j[i] != ':') return 0;
		i = space(j, n, i + 1);
		if (match && i < n && j[i] == '"') {
			end = string(j, n, i);
			*v = j + i + 1;
			*vn = end - i - 2;
			return end <= n;
		}
		i = space(j, n, value(j, n, i));
		if (i >= n || j[i] != ',') return 0;
		i = space(j, n, i + 1);
	}
	return 0;
}

// put appends s[0:n] at b[*at], escaped for a JSON string if escape is set;
// it returns 0 when b (of size cap) is full.
static int put(char *b, u32 cap, u32 *at, const char *s, u32 n, int escape) {
	static const char hex[] = "0123456789abcdef";
	for (u32 i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[6] = {(char)c};
		u32 en = 1;
		if (escape && (c == '"' || c == '\\')) {
			e[0] = '\\', e[1] = (char)c, en = 2;
		} else if (escape && c < 0x20) {
			e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15], en = 6;
		}
		if (*at + en > cap) return 0;
		for (u32 k = 0; k < en; k++) b[(*at)++] = e[k];
	}
	return 1;
}

static int puts_(char *b, u32 cap, u32 *at, const char *s) { return put(b, cap, at, s, length(s), 0); }

EXPORT("lkedge_on_event") i32 lkedge_on_event(u32 size) {
	char *event = heap(size);
	if (!event) return failed("no memory for the event");
	if (event_read(event, size) != (i32)size) return failed("event_read did not give the announced size");

	i32 un = config_get("url", 3, url, sizeof url);
	if (un == -3) return failed("config key not set: \"url\"");
	if (un < 0 || (u32)un > sizeof url) return failed("config url is longer than 2048 bytes");

	const char *id, *type;
	u32 idn, typen;
	if (!field(event, size, "id", &id, &idn) || !field(event, size, "type", &type, &typen)) {
		return failed("event without a string id and type");
	}

	u32 at = 0;
	if (!(puts_(action, sizeof action, &at, "{\"type\":\"http\",\"url\":\"") &&
	      put(action, sizeof action, &at, url, (u32)un, 1) &&
	      puts_(action, sizeof action, &at, "\",\"headers\":[[\"Content-Type\",\"application/json\"]],\"idempotencyKey\":\"") &&
	      put(action, sizeof action, &at, id, idn, 0) && puts_(action, sizeof action, &at, "\"}"))) {
		return failed("the request does not fit in 4 KiB");
	}
	i32 status = action_emit_body(action, at, event, size);
	if (status != 0) return failed("the host refused the request");

	handled++;
	char count[10];
	u32 cn = 0;
	for (u32 v = handled; v || cn == 0; v /= 10) count[cn++] = (char)('0' + v % 10);
	u32 an = 0;
	put(attrs, sizeof attrs, &an, "type", 5, 0);
	put(attrs, sizeof attrs, &an, type, typen < 128 ? typen : 128, 0);
	put(attrs, sizeof attrs, &an, "\0n", 3, 0);
	while (cn) put(attrs, sizeof attrs, &an, &count[--cn], 1, 0);
	put(attrs, sizeof attrs, &an, "", 1, 0);
	host_log(0, "forwarded", 9, attrs, an);
	return 0;
}
