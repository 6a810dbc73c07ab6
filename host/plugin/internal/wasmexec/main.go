// Command wasmexec runs a Go test binary built for wasip1 in wazero, the
// runtime lkedge runs plugins in, so that the SDK's own benchmarks measure
// what a plugin pays (in wasm a call, an allocation or a byte scanned costs
// several times what it does natively):
//
//	go build -o /tmp/wasmexec ./host/plugin/internal/wasmexec
//	cd sdk && GOOS=wasip1 GOARCH=wasm go test -exec /tmp/wasmexec -run '^$' -bench 'ParseEvent|ParseLazy' .
//
// It mounts / and keeps the working directory, so tests find their
// testdata. lkedge's host functions are stubs that report no event, no
// config and accept everything: enough for the SDK's tests and benchmarks,
// which bring their own host or none.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wasmexec module.wasm [args...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[1:]))
}

func run(path string, args []string) int {
	ctx := context.Background()
	wasm, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	// The ABI's statuses: -1 no event, -3 not found, 0 OK.
	_, err = rt.NewHostModuleBuilder("lkedge").
		NewFunctionBuilder().WithFunc(func(int32, int32) int32 { return -1 }).Export("event_read").
		NewFunctionBuilder().WithFunc(func(int32, int32, int32, int32) int32 { return -3 }).Export("config_get").
		NewFunctionBuilder().WithFunc(func(int32, int32, int32, int32) int32 { return 0 }).Export("action_emit_body").
		NewFunctionBuilder().WithFunc(func(int32, int32, int32, int32, int32) int32 { return 0 }).Export("log").
		NewFunctionBuilder().WithFunc(func(int32, int32) int32 { return 0 }).Export("fail").
		Instantiate(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := wazero.NewModuleConfig().WithArgs(args...).WithStdout(os.Stdout).WithStderr(os.Stderr).
		WithSysWalltime().WithSysNanotime().WithFSConfig(wazero.NewFSConfig().WithDirMount("/", "/"))
	if wd, err := os.Getwd(); err == nil {
		cfg = cfg.WithEnv("PWD", wd)
	}
	_, err = rt.InstantiateWithConfig(ctx, wasm, cfg)
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return int(exit.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
