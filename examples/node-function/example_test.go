// Package nodefunction tests the Node.js Lambda example: it runs the
// handler with the local node against real UDP sockets and decodes what it
// sent with les' own decoders (examples/internal/functiontest).
package nodefunction

import (
	"context"
	"os/exec"
	"testing"

	"github.com/les-streams/les/examples/internal/functiontest"
)

const function = "fn-node"

// TestHandlerEmits invokes handler(event, context) of index.mjs in node
// with the agent addresses in the environment; the script prints the
// handler's STATS.
func TestHandlerEmits(t *testing.T) {
	node := functiontest.Require(t, "node")
	script := `
const m = await import('./index.mjs');
const result = await m.handler(JSON.parse(process.argv[1]),
  { functionName: '` + function + `', awsRequestId: '` + functiontest.RequestID + `' });
if (result.statusCode !== 200) throw new Error(JSON.stringify(result));
console.log(JSON.stringify(m.STATS));
`
	functiontest.Run(t, function, func(ctx context.Context) *exec.Cmd {
		return exec.CommandContext(ctx, node, "--input-type=module", "-e", script, functiontest.Event)
	})
}
