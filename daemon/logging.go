package main

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/config"
)

// newLogger builds the one logger that main passes down: readable lines on
// a terminal, JSON otherwise (journald keeps the fields).
func newLogger(w io.Writer, cfg config.Log) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	format := cfg.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "console"
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

func isTerminal(f *os.File) bool { return isatty.IsTerminal(f.Fd()) }

// componentLogger is log with the level log.levels sets for component, if any.
func componentLogger(log zerolog.Logger, cfg config.Log, component string) zerolog.Logger {
	if s, ok := cfg.Levels[component]; ok {
		if lvl, err := zerolog.ParseLevel(s); err == nil {
			return log.Level(lvl)
		}
	}
	return log
}
