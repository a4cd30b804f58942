package mux

import (
	"testing"

	"github.com/lemonade-lb/lemonade/service/servicetest"
)

func TestConformance(t *testing.T) { servicetest.Adapter(t, "consumer-mux", Serve, Run) }
