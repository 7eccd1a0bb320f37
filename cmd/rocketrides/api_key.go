package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/rides"
)

// apiKeyCmd manages the users' API keys, the credential of AUTH_MODE=api_key.
type apiKeyCmd struct {
	Create apiKeyCreateCmd `cmd:"" help:"Make an API key for a user and print it, this once: only its hash is stored."`
	List   apiKeyListCmd   `cmd:"" help:"List a user's API keys: id, created, revoked (never a secret)."`
	Revoke apiKeyRevokeCmd `cmd:"" help:"Revoke an API key by id: it authenticates nothing from then on."`
}

type apiKeyCreateCmd struct {
	Email string `required:"" help:"Email of the user the key authenticates as."`
}

// Run makes the key and prints it on stdout.
func (c *apiKeyCreateCmd) Run(ctx context.Context, g *Globals) error {
	p, err := newProcess(ctx, g, &processConfig{maxConns: 1, name: "api-key"})
	if err != nil {
		return err
	}
	defer p.close()
	user, err := userByEmail(ctx, p, c.Email)
	if err != nil {
		return err
	}
	token, key, err := rides.CreateAPIKey(ctx, p.pool, user.ID)
	if err != nil {
		return err
	}
	p.logger.InfoContext(ctx, "api-key: created", slog.String("email", user.Email), slog.Int64("api_key_id", key.ID))
	fmt.Fprintf(os.Stdout, "API key of %s (shown once): %s\n", user.Email, token)
	return nil
}

type apiKeyListCmd struct {
	Email string `required:"" help:"Email of the user whose keys to list."`
}

// Run prints one line per key.
func (c *apiKeyListCmd) Run(ctx context.Context, g *Globals) error {
	p, err := newProcess(ctx, g, &processConfig{maxConns: 1, name: "api-key"})
	if err != nil {
		return err
	}
	defer p.close()
	user, err := userByEmail(ctx, p, c.Email)
	if err != nil {
		return err
	}
	keys, err := db.New().APIKeyListByUser(ctx, p.pool, user.ID)
	if err != nil {
		return fmt.Errorf("listing API keys of %s: %w", user.Email, err)
	}
	for _, key := range keys {
		revoked := "live"
		if key.RevokedAt != nil {
			revoked = "revoked " + key.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(os.Stdout, "%d\tcreated %s\t%s\n", key.ID, key.CreatedAt.UTC().Format(time.RFC3339), revoked)
	}
	return nil
}

type apiKeyRevokeCmd struct {
	ID int64 `arg:"" help:"Id of the key: the number in rr_<id>_..., or from api-key list."`
}

// Run revokes the key; revoking a revoked key changes nothing.
func (c *apiKeyRevokeCmd) Run(ctx context.Context, g *Globals) error {
	p, err := newProcess(ctx, g, &processConfig{maxConns: 1, name: "api-key"})
	if err != nil {
		return err
	}
	defer p.close()
	key, err := db.New().APIKeyRevoke(ctx, p.pool, c.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("api-key: no API key has id %d", c.ID)
	}
	if err != nil {
		return fmt.Errorf("revoking API key %d: %w", c.ID, err)
	}
	p.logger.InfoContext(ctx, "api-key: revoked", slog.Int64("api_key_id", key.ID), slog.Int64("user_id", key.UserID), slog.Time("revoked_at", *key.RevokedAt))
	return nil
}

// userByEmail is the user with email, or an error that says there is none.
func userByEmail(ctx context.Context, p *process, email string) (*db.User, error) {
	user, err := db.New().UserGetByEmail(ctx, p.pool, email)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("api-key: no user has email %q", email)
	}
	if err != nil {
		return nil, fmt.Errorf("getting user %s: %w", email, err)
	}
	return user, nil
}
