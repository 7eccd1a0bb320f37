package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rocketrides/rocketrides/admin"
	"github.com/rocketrides/rocketrides/metrics"
)

// adminFlags say where the operator's listener is, in api and all.
type adminFlags struct {
	AdminPort string `env:"ADMIN_PORT" default:"127.0.0.1:5001" help:"Address (host:port) of the operator's listener: River UI at /riverui/, GET /metrics and Go's profiles at /debug/pprof/. It has no login: keep it off public networks."`
}

// startAdmin starts the operator's listener: River UI on riverClient's
// database, and m at /metrics. It runs until ctx is done or it is stopped.
func (f *adminFlags) startAdmin(ctx context.Context, riverClient *river.Client[pgx.Tx], m *metrics.Metrics, logger *slog.Logger) (*admin.Server, error) {
	server, err := admin.NewServer(riverClient, m, &admin.ServerConfig{Addr: f.AdminPort, Logger: logger})
	if err != nil {
		return nil, err
	}
	if err := server.Start(ctx); err != nil {
		return nil, err
	}
	return server, nil
}
