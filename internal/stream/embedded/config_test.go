package embedded

import "testing"

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Sync: "sometimes"}, {Listen: "nope"}, {MaxAge: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
