//go:build !(peer && ignore)

package main

import (
	"context"
	"errors"
)

// peerBuilt says that the peer is not built in (see peer.go).
const peerBuilt = false

// errPeerNotBuilt is the serve-peer mode of a bench built without the peer.
var errPeerNotBuilt = errors.New("the bench was built without the peer (see peer.go)")

// servePeer fails: the peer is not built in.
func servePeer(context.Context, []string) error {
	return errPeerNotBuilt
}
