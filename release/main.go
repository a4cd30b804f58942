// Command release does the steps of a Lemonade release that need Go's module
// tooling (golang.org/x/mod); the Makefile's release and release-proxy
// targets drive it, and docs/releasing.md explains the whole procedure.
//
//	release [-root DIR] modules              the published modules: DIR PATH per line
//	release [-root DIR] check-next VERSION   VERSION may follow the one in VERSION
//	release [-root DIR] set-version VERSION  VERSION file and internal requires set to it
//	release [-root DIR] proxy -out DIR [-version VERSION]
//	                                        what a release would publish, as a GOPROXY directory
//	release [-root DIR] devmod -module DIR -out FILE.mod
//	                                        for a module without replace lines (the CLI), a
//	                                        go.mod with them for GOWORK=off builds; prints
//	                                        -modfile=FILE.mod, or nothing when none is needed
//	release [-root DIR] apidiff [-next VERSION]
//	                                        each module's API changes since its last tag, and
//	                                        whether VERSION (or any release, at v1+) may carry them
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: release [-root DIR] modules | check-next VERSION | set-version VERSION | proxy -out DIR [-version VERSION] | devmod -module DIR -out FILE.mod | apidiff [-next VERSION]")

func run(args []string, stdout io.Writer) error {
	top := flag.NewFlagSet("release", flag.ContinueOnError)
	root := top.String("root", "..", "the repository's root, where go.work and VERSION are")
	if err := top.Parse(args); err != nil {
		return err
	}
	args = top.Args()
	if len(args) == 0 {
		return errUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "modules":
		if len(rest) != 0 {
			return errUsage
		}
		mods, err := Published(*root)
		if err != nil {
			return err
		}
		for _, m := range mods {
			fmt.Fprintln(stdout, m.Dir, m.Path)
		}
		return nil
	case "check-next":
		if len(rest) != 1 {
			return errUsage
		}
		current, err := CurrentVersion(*root)
		if err != nil {
			return err
		}
		return CheckNext(current, rest[0])
	case "set-version":
		if len(rest) != 1 {
			return errUsage
		}
		return SetVersion(*root, rest[0])
	case "proxy":
		fs := flag.NewFlagSet("release proxy", flag.ContinueOnError)
		out := fs.String("out", "", "the directory to write the module proxy to (required)")
		version := fs.String("version", "", "the version to publish as (default: the VERSION file's)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *out == "" || fs.NArg() != 0 {
			return errors.New("usage: release proxy -out DIR [-version VERSION]")
		}
		if *version == "" {
			v, err := CurrentVersion(*root)
			if err != nil {
				return err
			}
			*version = v
		}
		return WriteProxy(*root, *out, *version)
	case "devmod":
		fs := flag.NewFlagSet("release devmod", flag.ContinueOnError)
		dir := fs.String("module", "", "the module's directory, relative to the root")
		out := fs.String("out", "", "the go.mod to write, ending in .mod")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *dir == "" || *out == "" || fs.NArg() != 0 {
			return errors.New("usage: release devmod -module DIR -out FILE.mod")
		}
		abs, err := filepath.Abs(*out)
		if err != nil {
			return err
		}
		wrote, err := DevModFile(*root, *dir, abs)
		if wrote {
			fmt.Fprintf(stdout, "-modfile=%s\n", abs)
		}
		return err
	case "apidiff":
		fs := flag.NewFlagSet("release apidiff", flag.ContinueOnError)
		next := fs.String("next", "", "the version about to be released: fail if it is too small for the changes")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return errUsage
		}
		if *next != "" {
			if err := CheckVersion(*next); err != nil {
				return err
			}
		}
		changes, err := APIChanges(*root)
		if err != nil {
			return err
		}
		return ReportAPI(stdout, changes, *next)
	}
	return fmt.Errorf("unknown command %q; %w", args[0], errUsage)
}
