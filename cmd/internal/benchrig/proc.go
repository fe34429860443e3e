// Package benchrig is the harness of the measuring commands (bench-uplink,
// bench-broker, footprint): processes started and stopped by PID, their
// CPU, memory and disk figures from /proc, paced MQTT publishers and
// subscribers that time every message, and the tables the commands print.
// The daemon never imports it.
package benchrig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TicksPerSecond is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux this runs on).
const TicksPerSecond = 100

// CPUTicks returns utime+stime of pid (all its threads) from
// /proc/PID/stat, in ticks of 1/TicksPerSecond s.
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("benchrig: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("benchrig: /proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64) // utime is field 14 of stat
	s, err2 := strconv.ParseInt(f[12], 10, 64) // stime is field 15
	return u + s, errors.Join(err1, err2)
}

// CPU returns the CPU time of pid (user + system, all threads).
func CPU(pid int) (time.Duration, error) {
	t, err := CPUTicks(pid)
	return time.Duration(t) * time.Second / TicksPerSecond, err
}

// RSSKiB returns VmRSS of pid in KiB.
func RSSKiB(pid int) (int64, error) {
	return procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
}

// WriteBytes returns write_bytes of pid from /proc/PID/io: the bytes it
// caused to be written to storage (counted when a page is dirtied, so a
// rewritten page counts again; tmpfs counts nothing).
func WriteBytes(pid int) (int64, error) {
	return procField(fmt.Sprintf("/proc/%d/io", pid), "write_bytes:")
}

// procField returns the number after key in a /proc file of "key value"
// lines (a " kB" suffix is dropped).
func procField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("benchrig: no %s in %s", key, path)
}

// Usage is a snapshot of a process's counters, for deltas over a phase.
type Usage struct {
	CPU        time.Duration
	WriteBytes int64
	// Switches counts the context switches of pid's threads, voluntary
	// (a thread went to sleep: a futex, epoll or nanosleep) and not.
	// Those of threads that ended are gone, so a delta may undercount.
	Switches int64
}

// Sample reads pid's CPU time, write_bytes and context switches.
func Sample(pid int) (Usage, error) {
	c, err := CPU(pid)
	if err != nil {
		return Usage{}, err
	}
	w, err := WriteBytes(pid)
	if err != nil {
		return Usage{}, err
	}
	sw, err := Switches(pid)
	return Usage{CPU: c, WriteBytes: w, Switches: sw}, err
}

// Switches returns the context switches of pid's threads (the sum of
// voluntary_ctxt_switches and nonvoluntary_ctxt_switches in
// /proc/PID/task/*/status).
func Switches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("benchrig: threads of %d: %v", pid, err)
	}
	var sum int64
	for _, t := range tasks {
		v, err1 := procField(t, "voluntary_ctxt_switches:")
		n, err2 := procField(t, "nonvoluntary_ctxt_switches:")
		if errors.Join(err1, err2) != nil {
			continue // the thread ended between the glob and the read
		}
		sum += v + n
	}
	return sum, nil
}

// Sub returns u - v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{CPU: u.CPU - v.CPU, WriteBytes: u.WriteBytes - v.WriteBytes, Switches: u.Switches - v.Switches}
}
