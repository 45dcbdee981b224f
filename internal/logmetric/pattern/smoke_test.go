package pattern

import "testing"

func TestSmoke(t *testing.T) {
	cases := []struct {
		p, l string
		want bool
	}{
		{"ERROR", "[ERROR] A fatal exception", true},
		{"ERROR -Exiting", "Exiting with ERRORCODE: -1", false},
		{"[ip, id, user, timestamp, request, status_code = 4*, size]", `127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 404 1534`, true},
		{"[..., status_code = 4* || status_code = 5*, ...]", `127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 500 1534`, true},
		{`{ $.eventType = "UpdateTrail" }`, `{"eventType":"UpdateTrail","a":[1,2]}`, true},
		{`{ $.a[1] = 2 && $.b NOT EXISTS }`, `{"eventType":"UpdateTrail","a":[1,2]}`, true},
		{`{ $.a[*] = 2 }`, `{"eventType":"UpdateTrail","a":[1,2]}`, true},
		{`{ $.a[*] = 3 }`, `{"eventType":"UpdateTrail","a":[1,2]}`, false},
	}
	for _, c := range cases {
		p, err := Compile(c.p)
		if err != nil {
			t.Fatalf("%q: %v", c.p, err)
		}
		if got := p.NewMatcher().Match([]byte(c.l)); got != c.want {
			t.Errorf("%q on %q = %v", c.p, c.l, got)
		}
	}
}
