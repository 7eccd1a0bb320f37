// Command testclean drops what the test suite leaves on the server of
// TEST_DATABASE_URL (see dbtest.Clean): `go tool task test-clean` runs it.
// Tests running at the same time on that server lose their databases.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rocketrides/rocketrides/db/dbtest"
)

func main() {
	dropped, err := dbtest.Clean(context.Background(), dbtest.DatabaseURL())
	for _, name := range dropped {
		fmt.Println("testclean: dropped", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testclean:", err)
		os.Exit(1)
	}
	if len(dropped) == 0 {
		fmt.Println("testclean: nothing to drop")
	}
}
