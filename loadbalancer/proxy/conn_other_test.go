//go:build (unix && !linux) || lemonade_goroutines

package proxy

import "testing"

// The flow that times out first may be the quiet one (reading a client that
// sends nothing), not the one stuck writing to a client that stopped
// reading: the connection still ends with a reset, since bytes are held.
func TestIdleCutIsAResetWhicheverFlowTimesOutFirst(t *testing.T) {
	// The stalled write counts the connection idle half an idle timeout
	// late: the quiet read (an eighth late) decides.
	writeSlackEighths.Store(4)
	defer writeSlackEighths.Store(0)
	checkIdleCutIsAReset(t)
}
