package main

import (
	"bytes"
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

// dlq lists, shows and replays dead letters through the running service's
// operator API (LKEDGE_ADMIN_LISTEN): the outbox file is held open by the
// service, and going through it means a replay is picked up at once.
const dlqUsage = `usage:
  lkedge dlq list [--since T] [--limit N] [--json]   requests that failed every attempt
  lkedge dlq show ID                                 one of them, in full
  lkedge dlq replay ID | --since T                   send them again
(T: RFC 3339 or a duration such as 2h; lkedge dlq COMMAND -h for each
command's options)
`

func dlq(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("dlq needs list, show ID or replay (ID | --since TIME)\n\n" + strings.TrimSpace(dlqUsage))
	}
	if isHelp(args) {
		return help(out, dlqUsage)
	}
	switch args[0] {
	case "list", "show", "replay":
	default:
		return fmt.Errorf("dlq: unknown subcommand %q (list, show, replay)", args[0])
	}
	var since, admin string
	var limit int
	var asJSON bool
	cfg, fs, err := loadConfig("dlq "+args[0], args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&admin, "admin", "", "operator API (default: this configuration's LKEDGE_ADMIN_LISTEN)")
		if args[0] != "show" {
			fs.StringVar(&since, "since", "", "only dead letters since this RFC 3339 time or this long ago (e.g. 2h)")
		}
		if args[0] == "list" {
			fs.IntVar(&limit, "limit", 0, "at most this many, the newest (0 = all)")
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		}
	})
	if err != nil {
		return err
	}
	if admin == "" {
		admin = "http://" + publicAddr(cfg.AdminListen)
	}
	if since != "" {
		if d, err := time.ParseDuration(since); err == nil {
			since = time.Now().Add(-d).UTC().Format(time.RFC3339)
		} else if _, err := time.Parse(time.RFC3339, since); err != nil {
			return fmt.Errorf("--since %q: neither an RFC 3339 time nor a duration", since)
		}
	}
	q := url.Values{}
	switch args[0] {
	case "list":
		if fs.NArg() != 0 {
			return errors.New("dlq list takes no arguments")
		}
		if since != "" {
			q.Set("since", since)
		}
		if limit > 0 {
			q.Set("limit", fmt.Sprint(limit))
		}
		body, err := call(http.MethodGet, admin+"/dlq?"+q.Encode(), cfg.AdminToken)
		if err != nil {
			return err
		}
		if asJSON {
			_, err = out.Write(body)
			return err
		}
		return printDeadLetters(out, body)
	case "show":
		if fs.NArg() != 1 {
			return errors.New("dlq show needs exactly one ID")
		}
		q.Set("id", fs.Arg(0))
		body, err := call(http.MethodGet, admin+"/dlq/show?"+q.Encode(), cfg.AdminToken)
		if err != nil {
			return err
		}
		_, err = out.Write(body)
		return err
	case "replay":
		switch {
		case fs.NArg() == 1 && since == "":
			q.Set("id", fs.Arg(0))
		case fs.NArg() == 0 && since != "":
			q.Set("since", since)
		default:
			return errors.New("dlq replay needs one ID or --since TIME")
		}
		body, err := call(http.MethodPost, admin+"/dlq/replay?"+q.Encode(), cfg.AdminToken)
		if err != nil {
			return err
		}
		var res struct{ Replayed int }
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		fmt.Fprintf(out, "replayed %d\n", res.Replayed)
		return nil
	}
	return fmt.Errorf("dlq: unknown subcommand %q (list, show, replay)", args[0])
}

// call asks the operator API, with LKEDGE_ADMIN_TOKEN when this
// configuration has one.
func call(method, u, token string) ([]byte, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("--admin: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach lkedge's operator API (is lkedge serve running? LKEDGE_ADMIN_LISTEN): %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if res.StatusCode == http.StatusNotFound && !bytes.Contains(body, []byte("404 page not found")) {
		// "no dead letter ID": the answer says it all.
		return nil, errors.New(strings.TrimSpace(string(body)))
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("lkedge answered %s: %s", res.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func printDeadLetters(out io.Writer, body []byte) error {
	var dls []struct {
		ID        string    `json:"id"`
		Plugin    string    `json:"plugin"`
		Attempts  int       `json:"attempts"`
		LastError string    `json:"last_error"`
		DeadAt    time.Time `json:"dead_at"`
	}
	if err := json.Unmarshal(body, &dls); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEAD AT\tID\tPLUGIN\tATTEMPTS\tLAST ERROR")
	for _, d := range dls {
		reason := d.LastError
		if len(reason) > 80 {
			reason = reason[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.DeadAt.Format(time.RFC3339), d.ID, d.Plugin, d.Attempts, reason)
	}
	return tw.Flush()
}
