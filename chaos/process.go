package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is a running rocketrides subcommand, writing its log to a file of
// its own (appended to, so the API's restarts share one file).
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	name string
}

// start starts the binary with args and env added to the run's environment.
func (h *harness) start(name string, env []string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(filepath.Join(h.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s's log: %w", name, err)
	}
	cmd := exec.Command(h.binary, args...)
	cmd.Env = append(append(os.Environ(), h.env...), env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), name: name}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	h.processes = append(h.processes, p)
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill kills the process with SIGKILL and waits until it is gone.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // fails only if it already exited
	<-p.done
}

// stop asks the process to shut down with SIGTERM, and kills it if it has
// not within timeout.
func (p *process) stop(timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
	}
}

// errExited means a process exited while it was waited for.
var errExited = errors.New("exited")

// waitReady polls url until it answers 200, and returns how long that took.
// It fails if p exits first, or after timeout.
func waitReady(ctx context.Context, p *process, url string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		if p.exited() {
			return 0, fmt.Errorf("%s %w before it was ready (see %s.log)", p.name, errExited, p.name)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+stripeAPIKey) // the Stripe fake's list wants one
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return 0, fmt.Errorf("%s not ready at %s within %s", p.name, url, timeout)
		}
	}
}

// freePort returns a loopback port that is free now.
func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
