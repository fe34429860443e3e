package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/edged/edged/localbroker"
)

// cmdPasswd reads a password, twice without echo from a terminal or
// once (the first line) from a pipe, and prints the password_hash line
// of a user entry. The password itself is never printed or stored.
func cmdPasswd(args []string, in io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged passwd: unexpected arguments %q (it reads the password from the terminal or stdin)", args)}
	}
	var pw []byte
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(prompt string) ([]byte, error) {
			fmt.Fprint(stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(stderr)
			return b, err
		}
		var err error
		if pw, err = read("Password: "); err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		again, err := read("Again: ")
		if err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		if string(again) != string(pw) {
			return errors.New("passwd: the passwords differ")
		}
	} else {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("passwd: %w", err)
		}
		pw = []byte(strings.TrimRight(line, "\r\n"))
	}
	hash, err := localbroker.HashPassword(pw)
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	fmt.Fprintf(stdout, "password_hash: %q\n", hash)
	return nil
}

// cmdToken prints a new bearer token for the HTTP API and the line that
// lets a user use it. Only the token's hash goes into the config: the
// token is shown once.
func cmdToken(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged token: unexpected arguments %q", args)}
	}
	tok, hash, err := localbroker.NewToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n# Give the token above to the client (Authorization: Bearer ...); it is shown only once.\n"+
		"# Add its hash to the user's entry in the config:\ntokens: [%q]\n", tok, hash)
	return nil
}
