package main

import (
	"context"
	"errors"
)

// This file stands for package dbospeer until it is merged: branch
// bench11-peer replaces it with peer_dbos.go, which calls dbospeer.New.

// peerBuilt says whether the peer is built in.
const peerBuilt = false

// errPeerNotBuilt is the serve-peer mode of a bench built without the peer.
var errPeerNotBuilt = errors.New("the bench is built without the peer (package dbospeer)")

// newPeer fails: the peer is not built in.
func newPeer(context.Context, *peerConfig) (peerService, error) {
	return nil, errPeerNotBuilt
}
