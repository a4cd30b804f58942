package service

import (
	"testing"

	"go.uber.org/goleak"
)

// ServeUntilDone starts a goroutine; none may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
