//go:build !linux

package workerfasthttp

import (
	"context"

	"github.com/valyala/fasthttp"
)

// watchClient, off Linux, does not watch the connection: a /work whose
// client left waits out its delay. Only parent ending stops it.
func watchClient(parent context.Context, _ *fasthttp.RequestCtx) (context.Context, func()) {
	return context.WithCancel(parent)
}
