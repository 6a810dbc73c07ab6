package sdk

import (
	"embed"
	"io/fs"
)

//go:embed go.mod README.md *.go internal/hostcall/*.go internal/jsonx/*.go sdktest/*.go
var source embed.FS

// Source is the SDK's own source code (with its tests), so that
// `lkedge plugin new` can write a plugin that builds and tests without the
// SDK being published or fetched: the scaffold gets a copy and a replace
// directive. Go's linker keeps it only in programs that call Source.
func Source() fs.FS { return source }
