package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// clockTicksPerSecond is Linux's USER_HZ, the unit of CPU times in
// /proc/PID/stat.
const clockTicksPerSecond = 100

// cpuReading is the CPU time spent so far by this process (load generator,
// Stripe fake, and the limit of new keys and cancels alike), by each PostgreSQL backend connected to the
// bench's database, and by the whole machine, whatever runs on it. Where
// the backends' /proc entries cannot be read (a remote server), the map is
// empty.
type cpuReading struct {
	at       time.Time
	backends map[int]time.Duration
	machine  time.Duration
	process  time.Duration
}

// readCPU reads the CPU times. It queries pg_stat_activity through pool.
func readCPU(ctx context.Context, pool *pgxpool.Pool) (*cpuReading, error) {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return nil, fmt.Errorf("reading own CPU time: %w", err)
	}
	reading := &cpuReading{
		at:       time.Now(),
		backends: make(map[int]time.Duration),
		machine:  machineCPU(),
		process:  time.Duration(usage.Utime.Nano() + usage.Stime.Nano()),
	}
	rows, err := pool.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	if err != nil {
		return nil, fmt.Errorf("listing backends: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, fmt.Errorf("reading backend pid: %w", err)
		}
		if cpu, ok := processCPU(pid); ok {
			reading.backends[pid] = cpu
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing backends: %w", err)
	}
	return reading, nil
}

// processCPU returns the user and system CPU time of process pid, from
// /proc/PID/stat, or false if it cannot be read.
func processCPU(pid int) (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after it. utime and stime are fields 14 and 15 of the line, 12 and
	// 13 after the name.
	_, rest, ok := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * time.Second / clockTicksPerSecond, true
}

// machineCPU returns the CPU time that every core spent busy (neither idle
// nor waiting for I/O), from /proc/stat, or 0 if it cannot be read.
func machineCPU() time.Duration {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, field := range fields[1:9] {
		ticks, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += ticks
		}
	}
	return time.Duration(busy) * time.Second / clockTicksPerSecond
}

// cpuUsage is the CPU time spent between readings.
type cpuUsage struct {
	elapsed  time.Duration
	machine  time.Duration
	postgres time.Duration
	process  time.Duration
}

// since is the usage from an earlier reading to r. A backend that started
// after the earlier reading counts from zero.
func (r *cpuReading) since(earlier *cpuReading) cpuUsage {
	usage := cpuUsage{
		elapsed: r.at.Sub(earlier.at),
		machine: r.machine - earlier.machine,
		process: r.process - earlier.process,
	}
	for pid, cpu := range r.backends {
		usage.postgres += cpu - earlier.backends[pid]
	}
	return usage
}

// add adds another period's usage.
func (u *cpuUsage) add(other cpuUsage) {
	u.elapsed += other.elapsed
	u.machine += other.machine
	u.postgres += other.postgres
	u.process += other.process
}

// cores is how many cores cpu kept busy on average over the usage's time.
func (u *cpuUsage) cores(cpu time.Duration) float64 {
	if u.elapsed <= 0 {
		return 0
	}
	return cpu.Seconds() / u.elapsed.Seconds()
}
