package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edged/edged/uplink"
	"github.com/edged/edged/uplink/wal"
)

// cmdBuffer is `edged buffer stat -c FILE`: the uplink backlog on disk. It
// reads the buffer without its lock and writes nothing, so it works while
// the daemon runs (the numbers may lag the daemon by one ack batch).
func cmdBuffer(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "stat" {
		return &exitError{code: 2, err: errors.New("edged buffer: usage: edged buffer stat -c FILE")}
	}
	path, rest, err := configFlag("buffer stat", args[1:], stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged buffer stat: unexpected arguments %q", rest)}
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("edged: %s: the config has problems:\n%w", path, err)}
	}
	dir := uplink.BufferDir(cfg.StateDir)
	in, err := wal.Inspect(wal.OSFS, dir)
	if err != nil {
		if cfg.Uplink == nil {
			return &exitError{code: 1, err: fmt.Errorf("edged buffer stat: %s has no uplink section and no buffer: %w", path, err)}
		}
		return &exitError{code: 1, err: fmt.Errorf("edged buffer stat: %w", err)}
	}
	fmt.Fprintf(stdout, "buffer:   %s\n", dir)
	fmt.Fprintf(stdout, "epoch:    %016x\n", in.Epoch)
	fmt.Fprintf(stdout, "backlog:  %d messages, %d bytes\n", in.Backlog, in.BacklogBytes)
	if in.Oldest.IsZero() {
		fmt.Fprintf(stdout, "oldest:   -\n")
	} else {
		age := time.Since(in.Oldest).Round(time.Second)
		fmt.Fprintf(stdout, "oldest:   %s ago (%s)\n", age, in.Oldest.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "seqs:     acked %d, last %d\n", in.AckedSeq, in.LastSeq)
	fmt.Fprintf(stdout, "disk:     %d segments, %d bytes\n", in.Segments, in.DiskBytes)
	if in.Skipped > 0 {
		fmt.Fprintf(stdout, "damaged:  %d segment files unreadable (edged repairs them at start)\n", in.Skipped)
	}
	return nil
}
