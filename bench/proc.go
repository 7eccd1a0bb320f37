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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readyTimeout bounds the wait for a process started by the bench to
// answer.
const readyTimeout = 30 * time.Second

// buildRocketrides builds cmd/rocketrides of the service's module (the one
// this module's go.mod replaces with ../) into dir and returns the binary's
// path.
func buildRocketrides(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/rocketrides/rocketrides").Output()
	if err != nil {
		return "", fmt.Errorf("finding the service's module: %w", err)
	}
	binary := filepath.Join(dir, "rocketrides")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/rocketrides")
	cmd.Dir = strings.TrimSpace(string(out))
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building rocketrides: %w\n%s", err, out)
	}
	return binary, nil
}

// server is a process the bench started that serves HTTP on a loopback
// port: the API, or the peer.
type server struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	name    string
	url     string
}

// startServer runs binary with args and env (added to the bench's own) and
// waits until GET url+readyPath answers 200. Its output goes to a log in
// dir, shown if it fails.
func startServer(ctx context.Context, dir, name, binary string, args, env []string, url, readyPath string) (*server, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s's log: %w", name, err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	// Killed with the bench, should the bench die without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{}), logPath: logPath, name: name, url: url}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, readyPath); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls readyPath until it answers 200, the process exits, or
// readyTimeout passes.
func (s *server) waitReady(ctx context.Context, readyPath string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+readyPath, nil)
		if err != nil {
			return fmt.Errorf("asking %s whether it is ready: %w", s.name, err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready (%s): %s", s.name, s.cmd.ProcessState, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %s", s.name, readyTimeout, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail is the end of the process's log.
func (s *server) logTail() string {
	out, _ := os.ReadFile(s.logPath)
	const most = 2000
	if len(out) > most {
		out = out[len(out)-most:]
	}
	return string(out)
}

// stop sends SIGTERM and waits for the process to exit, killing it after 20
// seconds.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// usage reads the process's CPU time and resident memory.
func (s *server) usage() (procUsage, error) {
	return readProcUsage(s.cmd.Process.Pid)
}

// procUsage is a process's CPU time so far and its resident memory now.
type procUsage struct {
	at       time.Time
	cpu      time.Duration
	rssBytes int64
}

// readProcUsage reads process pid's CPU time from /proc/PID/stat and its
// RSS (VmRSS) from /proc/PID/status.
func readProcUsage(pid int) (procUsage, error) {
	cpu, ok := processCPU(pid)
	if !ok {
		return procUsage{}, fmt.Errorf("reading CPU time of process %d", pid)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procUsage{}, fmt.Errorf("reading memory of process %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		value, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return procUsage{}, fmt.Errorf("parsing VmRSS of process %d: %w", pid, err)
		}
		return procUsage{at: time.Now(), cpu: cpu, rssBytes: kb << 10}, nil
	}
	return procUsage{}, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// freeAddr returns a loopback address with a port free now.
func freeAddr() (string, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer listener.Close()
	return listener.Addr().String(), nil
}
