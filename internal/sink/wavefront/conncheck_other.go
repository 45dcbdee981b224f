//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package wavefront

import "net"

// peerGone cannot tell on this platform; a dead connection is found by the
// next write failing.
func peerGone(net.Conn) bool { return false }
