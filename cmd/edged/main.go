// Command edged is the edge gateway daemon and its tools: `edged run`
// samples the sensors, serves the local MQTT broker and keeps the control
// loops; `edged validate` checks a config; the other subcommands help wire
// and inspect a node. This is the only package that knows every other.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"
)

// Set at build time by the Makefile: -ldflags "-X main.version=...
// -X main.commit=... -X main.buildEpoch=...". buildEpoch is the commit's
// time in Unix seconds (SOURCE_DATE_EPOCH), not the time of the build, so
// two builds of one commit are byte for byte the same.
var (
	version    = "dev"
	commit     = ""
	buildEpoch = ""
)

const usage = `edged: edge gateway for Raspberry Pi sensor nodes

Usage:
  edged run -c FILE               run the daemon
  edged validate -c FILE          check a config; print every problem as FILE:LINE:COL: message
  edged read -c FILE SENSOR_ID    open one sensor and print one reading (wiring check)
  edged safe -c FILE              drive every actuator to its safe state and exit (systemd ExecStopPost)
  edged buffer stat -c FILE       show the uplink backlog on disk (works while the daemon runs)
  edged i2c scan [--bus NAME]     probe I2C addresses like i2cdetect and name known devices (bus "1")
  edged passwd                    read a password (no echo, or a line on stdin) and print its password_hash line
  edged token                     print a new HTTP API token and the tokens line for its user
  edged drivers                   list the driver names a config can use
  edged version                   print the version

Signals (run): SIGTERM/SIGINT stop cleanly (actuators to their safe state,
status "offline"); SIGHUP reloads the config file live: a file with
problems is refused and the running config kept; listener addresses,
state_dir and the device id take a restart (the outcome is logged and
shown by /readyz and /metrics).
`

// exitError carries a process exit code through the subcommands.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(rest, stderr)
	case "validate":
		err = cmdValidate(rest, stdout, stderr)
	case "read":
		err = cmdRead(rest, stdout, stderr)
	case "safe":
		err = cmdSafe(rest, stdout, stderr)
	case "buffer":
		err = cmdBuffer(rest, stdout, stderr)
	case "i2c":
		err = cmdI2C(rest, stdout, stderr)
	case "passwd":
		err = cmdPasswd(rest, os.Stdin, stdout, stderr)
	case "token":
		err = cmdToken(rest, stdout)
	case "drivers":
		cmdDrivers(stdout)
	case "version", "-version", "--version":
		c, date := buildCommit()
		fmt.Fprintf(stdout, "edged %s (commit %s, built %s; %s %s/%s)\n", buildVersion(), c, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "edged: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, ee.err)
		}
		return ee.code
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "edged:", err)
	return 1
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// buildCommit returns the commit and the build date (the commit's time,
// RFC 3339 UTC): from the ldflags, else from the Go toolchain's VCS stamp
// (a plain `go build` in a checkout), else "unknown".
func buildCommit() (rev, date string) {
	rev, date = commit, "unknown"
	if sec, err := strconv.ParseInt(buildEpoch, 10, 64); err == nil {
		date = time.Unix(sec, 0).UTC().Format(time.RFC3339)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		modified := false
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.time" && date == "unknown":
				date = s.Value
			case s.Key == "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && commit == "" && rev != "" {
			rev += "-dirty"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	return rev, date
}

// configFlag parses `-c FILE` (and the flags more adds) for a subcommand
// and returns the remaining arguments.
func configFlag(name string, args []string, stderr io.Writer, more ...func(*flag.FlagSet)) (path string, rest []string, err error) {
	fs := flag.NewFlagSet("edged "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "c", "", "config file (YAML)")
	for _, m := range more {
		m(fs)
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, &exitError{code: 2, err: errors.New("")}
	}
	if path == "" {
		return "", nil, &exitError{code: 2, err: fmt.Errorf("edged %s: missing -c FILE", name)}
	}
	return path, fs.Args(), nil
}
