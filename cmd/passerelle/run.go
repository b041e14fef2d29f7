package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/firewall"
	"passerelle/pkg/netif"
	"passerelle/pkg/version"
)

// cmdRun runs the box: apply the config, then re-apply it on SIGHUP until
// SIGTERM or SIGINT.
func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (required)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "passerelle run: expected --config FILE\n%s", usage)
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle run: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log.Info("starting", "version", version.String(), "config", *path, "pid", os.Getpid())
	b := newBox(log)
	if err := loadAndApply(ctx, log, b, *path); err != nil {
		log.Error("could not apply the configuration at start", "err", err)
		return 1
	}
	// Services start once their first plan is applied; until the
	// supervisor (issue 3) restarts them, a failed service is logged and
	// the rest of the box keeps running.
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range b.Services() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil {
				log.Error("service stopped", "service", s.Name(), "err", err)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "reason", "signal")
			return 0
		case <-hup:
			log.Info("SIGHUP: re-reading the configuration", "config", *path)
			if err := loadAndApply(ctx, log, b, *path); err != nil {
				log.Error("new configuration not applied; the running one is kept", "err", err)
			}
		}
	}
}

// newBox composes the box's components in apply order.
func newBox(log *slog.Logger) *box.Box {
	return box.New(log,
		netif.New(log.With("component", "interfaces")),
		firewall.New(log.With("component", "firewall")),
	)
}

// loadAndApply reads, validates and applies one configuration file. A
// config with errors is never applied; every problem is logged.
func loadAndApply(ctx context.Context, log *slog.Logger, b *box.Box, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				log.Error("configuration problem", "problem", e.Error())
			}
			return fmt.Errorf("%s: %d problem(s) in the configuration", path, len(list))
		}
		return err
	}
	rep, err := b.Apply(ctx, cfg)
	for _, r := range rep.Results {
		if r.Err != nil {
			log.Error("component failed", "component", r.Component, "took", r.Took, "err", r.Err)
		} else {
			log.Info("component applied", "component", r.Component, "took", r.Took)
		}
	}
	if rep.RolledBack {
		log.Warn("previous configuration restored", "err", rep.RollbackErr)
	}
	if err != nil {
		return err
	}
	log.Info("configuration applied", "config", path, "uai", cfg.Identity.UAI, "school", cfg.Identity.Name)
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: expected text or json, got %q", format)
}
