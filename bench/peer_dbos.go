package main

import (
	"context"

	"github.com/rocketrides/rocketrides/bench/dbospeer"
)

// peerBuilt says whether the peer is built in.
const peerBuilt = true

// The peer's schemas, dropped when the bench empties its database.
const (
	peerSchema       = dbospeer.Schema
	peerSystemSchema = dbospeer.SystemSchema
)

// newPeer starts the peer, package dbospeer.
func newPeer(ctx context.Context, config *peerConfig) (peerService, error) {
	peer, err := dbospeer.New(ctx, &dbospeer.Config{
		DatabaseURL:  config.DatabaseURL,
		StripeURL:    config.StripeURL,
		StripeKey:    config.StripeKey,
		PoolMaxConns: config.PoolMaxConns,
		Logger:       config.Logger,
	})
	if err != nil {
		return nil, err
	}
	return peer, nil
}
