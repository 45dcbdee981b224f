// Package pythonfunction tests the Python Lambda example: it runs the
// handler with the local python3 against real UDP sockets and decodes what
// it sent with les' own decoders (examples/internal/functiontest).
package pythonfunction

import (
	"context"
	"os/exec"
	"testing"

	"github.com/les-streams/les/examples/internal/functiontest"
)

const function = "fn-py"

// TestHandlerEmits invokes handler.handler(event, context) in python3
// with the agent addresses in the environment; the script prints the
// handler's STATS.
func TestHandlerEmits(t *testing.T) {
	py := functiontest.Require(t, "python3")
	script := `
import json, sys
import handler
class Context:
    function_name = "` + function + `"
    aws_request_id = "` + functiontest.RequestID + `"
result = handler.handler(json.loads(sys.argv[1]), Context())
assert result["statusCode"] == 200, result
print(json.dumps(handler.STATS))
`
	functiontest.Run(t, function, func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, py, "-c", script, functiontest.Event)
		cmd.Env = []string{"PYTHONDONTWRITEBYTECODE=1"} // no __pycache__ in the tree
		return cmd
	})
}
