package admin_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/admin"
	"github.com/rocketrides/rocketrides/rides"
)

// chromiumPath finds Debian's chromium. Without it the test is skipped on a
// developer's machine, with the command that installs it, and fails in CI
// (CI=true), where .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	const install = "chromium not found: install it with `apt-get install chromium` (Debian) to run this browser test"
	if ok, _ := strconv.ParseBool(os.Getenv("CI")); ok {
		t.Fatal(install + "; CI must run it (.ci/run installs it)")
	}
	t.Skip(install)
	return ""
}

// newBrowser starts headless Chromium with a profile of its own, for the
// duration of the test, and returns a context that drives a tab of it.
// The flags keep Chromium off the network but for the pages it is sent to.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelTimeout)
	return ctx
}

// River UI, in a real browser, lists the receipt job of a real request.
func TestServerRiverUIInBrowser(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	bundle := setup(t)

	// The job list shows each job as a row with a link to the job, its kind
	// and its args. Wait for the row of the request's job.
	row := chromedp.Search(fmt.Sprintf(`//li[.//a[@href="%sjobs/%d"]]`, admin.PathRiverUI, bundle.job.Job.ID))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(bundle.url+admin.PathRiverUI+"jobs?state=available"),
		chromedp.WaitVisible(row),
	))
	text, err := chromedp.Run(ctx, chromedp.Text(row))
	require.NoError(t, err)
	require.Contains(t, text, rides.JobNameSendRideReceipt)
	require.Contains(t, text, fmt.Sprintf(`"ride_id":%d`, bundle.ride.Ride.ID))

	screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	require.NoError(t, err)
	// A temporary directory, removed after the test, unless go test runs
	// with -artifacts: then it is kept under -outputdir.
	path := filepath.Join(t.ArtifactDir(), "riverui-jobs.png")
	require.NoError(t, os.WriteFile(path, screenshot, 0o600))
	t.Logf("screenshot: %s", path)
}
