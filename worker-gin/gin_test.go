package workergin

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/service/servicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAdapter(t *testing.T) { servicetest.Adapter(t, Framework, Serve, Run) }

func TestHandlerInProcess(t *testing.T) { servicetest.Handler(t, Handler) }

func BenchmarkWorkNoDelay(b *testing.B) { servicetest.BenchmarkHandler(b, Handler) }
