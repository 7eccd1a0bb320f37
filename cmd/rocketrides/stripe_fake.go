package main

import (
	"context"
	"time"

	"github.com/rocketrides/rocketrides/stripefake"
)

type stripeFakeCmd struct {
	Addr           string        `default:"127.0.0.1:12111" help:"Address to listen on."`
	FailAfterRate  float64       `help:"Fraction of charge and refund requests that record them, then answer 500 (the response is lost)."`
	FailBeforeRate float64       `help:"Fraction of charge and refund requests that answer 500 without recording anything."`
	Latency        time.Duration `help:"Latency added to every charge request."`
	Seed           int64         `help:"Seed of the fault injection's randomness; the same seed fails the same requests."`
}

func (c *stripeFakeCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("stripe-fake")
	return stripefake.ListenAndServe(ctx, c.Addr, stripefake.Config{
		FailAfterRate:  c.FailAfterRate,
		FailBeforeRate: c.FailBeforeRate,
		Latency:        c.Latency,
		Seed:           c.Seed,
		Logger:         logger,
	})
}
