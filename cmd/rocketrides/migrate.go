package main

import (
	"context"
	"os"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/migrations"
)

type migrateCmd struct {
	Direction string `arg:"" default:"up" enum:"up,down,status" help:"up (create the database if missing and apply everything pending), down (roll back our latest migration), or status."`
	All       bool   `help:"With down: roll back every migration, ours and River's, leaving an empty database."`
}

func (c *migrateCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("migrate")
	if c.Direction == "up" {
		if err := db.CreateDatabase(ctx, g.DatabaseURL); err != nil {
			return err
		}
	}
	pool, err := db.NewPool(ctx, g.DatabaseURL, 2) // not g.pool: it wants the schema migrated
	if err != nil {
		return err
	}
	defer pool.Close()
	switch c.Direction {
	case "down":
		return migrations.Down(ctx, pool, c.All, logger)
	case "status":
		return migrations.Status(ctx, pool, os.Stdout)
	default:
		return migrations.Up(ctx, pool, logger)
	}
}
