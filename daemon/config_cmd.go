package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sightd/sightd/daemon/config"
)

// exitError carries a process exit code: 2 for a bad configuration, so
// that systemd and scripts can tell it from a runtime failure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// DefaultConfig is where the daemon's configuration lives under systemd.
const DefaultConfig = "/etc/sightd/sightd.yml"

// loadConfig reads the configuration; a bad one exits with code 2.
func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		if errors.Is(err, config.ErrInvalid) {
			return nil, &exitError{code: 2, err: err}
		}
		return nil, err
	}
	return c, nil
}

// checkConfig runs every check `sightd run` makes before it starts
// anything, without starting anything: the files it reads (the MQTT
// password and TLS files, the API token) and the model bundle, opened,
// verified and loaded with its self-test, then closed again. Every problem
// is reported, each with its field; the error exits with code 2. On
// success it says which model passed.
func checkConfig(c *config.Config) (string, error) {
	var errs []error
	if err := c.CheckFiles(); err != nil {
		errs = append(errs, err)
	}
	var passed string
	if _, err := os.Stat(c.Model.Bundle); err == nil { // a missing one is reported above
		log := zerolog.Nop()
		m, err := loadModel(c.Model.Bundle, runtimeOptions(c.Model, &log), log)
		if err != nil {
			errs = append(errs, fmt.Errorf("model.bundle: %w", err))
		} else {
			man := m.manifest()
			passed = fmt.Sprintf("%s v%d, self-test passed", man.Name, man.Version)
			m.close()
		}
	}
	if len(errs) > 0 {
		return "", &exitError{code: 2, err: fmt.Errorf("%w:\n%w", config.ErrInvalid, errors.Join(errs...))}
	}
	return passed, nil
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	var path string
	check := &cobra.Command{
		Use:   "check [-c FILE]",
		Short: "Validate the configuration and everything run would load, and report every problem",
		Long: "Validate the configuration file, read the files it names (the MQTT password, TLS files, the API token)\n" +
			"and load the model bundle with its self-test, as sightd run does before starting, without starting anything.\n" +
			"Problems exit with status 2; warnings (such as an API reachable from the network without a token) do not.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(path)
			if err != nil {
				return err
			}
			for _, w := range c.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			model, err := checkConfig(c)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (device %s, %d cameras, %d rules, bundle %s: %s)\n",
				path, c.Device.ID, len(c.Cameras), len(c.Rules), c.Model.Bundle, model)
			return nil
		},
	}
	check.Flags().StringVarP(&path, "config", "c", DefaultConfig, "configuration file")
	cmd.AddCommand(check)
	return cmd
}
