//go:build (unix && !linux) || lemonade_goroutines

package proxy

import "testing"

// The flow that times out first may be the quiet one (reading a client that
// sends nothing), not the one stuck writing to a client that stopped
// reading: the connection still ends with a reset, since bytes are held.
func TestIdleCutIsAResetWhicheverFlowTimesOutFirst(t *testing.T) {
	readSlackEighths.Store(-4) // the quiet read times out half an idle timeout early
	defer readSlackEighths.Store(1)
	checkIdleCutIsAReset(t)
}
