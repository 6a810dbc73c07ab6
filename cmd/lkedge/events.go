package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const eventsUsage = `usage:
  lkedge events failed list [--json]   events whose processing used up its attempts
  lkedge events failed show ID         one of them, with its webhook
  lkedge events failed retry ID        process it again through the Meet logic and the plugins
(ID is the LiveKit event id; lkedge events failed COMMAND -h for each
command's options)
`

// eventsCmd works on the journal's failed events through the running
// service's operator API (LKEDGE_ADMIN_LISTEN), which holds the journal.
func eventsCmd(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("events needs a command: failed list|show|retry\n\n" + strings.TrimSpace(eventsUsage))
	}
	if isHelp(args) || (args[0] == "failed" && isHelp(args[1:])) {
		return help(out, eventsUsage)
	}
	if args[0] != "failed" || len(args) < 2 {
		return fmt.Errorf("events: unknown command %q\n\n%s", args, eventsUsage)
	}
	cmd, args := args[1], args[2:]
	switch cmd {
	case "list", "show", "retry":
	default:
		return fmt.Errorf("events failed: unknown command %q (list, show, retry)", cmd)
	}
	var admin string
	var asJSON bool
	cfg, fs, err := loadConfig("events failed "+cmd, args, func(fs *flag.FlagSet) {
		fs.StringVar(&admin, "admin", "", "operator API (default: this configuration's LKEDGE_ADMIN_LISTEN)")
		if cmd == "list" {
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		}
	})
	if err != nil {
		return err
	}
	if admin == "" {
		admin = "http://" + publicAddr(cfg.AdminListen)
	}
	if cmd == "list" {
		if fs.NArg() != 0 {
			return errors.New("events failed list takes no arguments")
		}
		body, err := call(http.MethodGet, admin+"/events/failed", cfg.AdminToken)
		if err != nil {
			return err
		}
		if asJSON {
			_, err = out.Write(body)
			return err
		}
		return printFailed(out, body)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("events failed %s needs exactly one ID", cmd)
	}
	q := url.Values{"id": {fs.Arg(0)}}.Encode()
	if cmd == "show" {
		body, err := call(http.MethodGet, admin+"/events/failed/show?"+q, cfg.AdminToken)
		if err != nil {
			return err
		}
		_, err = out.Write(body)
		return err
	}
	if _, err := call(http.MethodPost, admin+"/events/failed/retry?"+q, cfg.AdminToken); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "retried %s\n", fs.Arg(0))
	return err
}

func printFailed(out io.Writer, body []byte) error {
	var evs []struct {
		ID       string    `json:"id"`
		Event    string    `json:"event"`
		FailedAt time.Time `json:"failed_at"`
		Reason   string    `json:"reason"`
	}
	if err := json.Unmarshal(body, &evs); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAILED AT\tID\tEVENT\tREASON")
	for _, e := range evs {
		reason := e.Reason
		if len(reason) > 80 {
			reason = reason[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.FailedAt.Format(time.RFC3339), e.ID, e.Event, reason)
	}
	return tw.Flush()
}
