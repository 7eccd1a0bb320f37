// Command rocketrides runs every process of rocket-rides, one subcommand
// each: the API, the completer, the enqueuer and its workers, the reaper, the
// simulator, or all of them at once; and the operator's commands migrate,
// seed, api-key, reconcile and inspect. Run `rocketrides --help` for the list.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses args, runs the chosen command until it ends or a signal
// arrives, and returns the exit code.
func run(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("rocketrides"),
		kong.Description("Rocket Rides: a ride-hailing API whose POST /rides is safe to retry, with idempotency keys on PostgreSQL."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rocketrides:", err)
		return 2
	}
	if len(args) == 0 {
		// No command: the usage says what there is, kong's error only
		// "expected one of ...". A usage error, so on stderr with status 2.
		parser.Stdout = os.Stderr
		kctx, err := kong.Trace(parser, nil)
		if err == nil {
			err = kctx.PrintUsage(false)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "rocketrides:", err)
		}
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		parser.Errorf("%s", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintln(os.Stderr, "rocketrides:", oneLine(err))
		return 1
	}
	return 0
}

// CLI is every subcommand and the settings they share.
type CLI struct {
	Globals

	All        allCmd        `cmd:"" help:"Run every process in one binary: API, completer, enqueuer and River's workers, reaper, simulator, and the Stripe fake when STRIPE_API_KEY is unset."`
	API        apiCmd        `cmd:"" name:"api" help:"Serve the API (POST /rides)."`
	APIKey     apiKeyCmd     `cmd:"" name:"api-key" help:"Create, list and revoke the users' API keys (AUTH_MODE=api_key)."`
	Completer  completerCmd  `cmd:"" help:"Drive abandoned requests to completion through the same phases as the API."`
	Enqueuer   enqueuerCmd   `cmd:"" help:"Move staged jobs into River and work them (send ride receipts)."`
	Inspect    inspectCmd    `cmd:"" help:"Show one request as support needs it: its key, ride, Stripe charge and refunds, audit records and jobs."`
	Migrate    migrateCmd    `cmd:"" help:"Apply or roll back the database schema (ours and River's)."`
	Reaper     reaperCmd     `cmd:"" help:"Delete idempotency keys older than REAPER_HORIZON, warning about unfinished ones."`
	Reconcile  reconcileCmd  `cmd:"" help:"Compare the database with Stripe's charges and report every difference."`
	Seed       seedCmd       `cmd:"" help:"Create the demo users and their Stripe customers (safe to run again)."`
	Simulator  simulatorCmd  `cmd:"" help:"Send random POST /rides traffic to the API, half of it failing on purpose."`
	StripeFake stripeFakeCmd `cmd:"" name:"stripe-fake" help:"Serve the Stripe-compatible fake on its own."`
}
