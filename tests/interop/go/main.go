// Command interop checks Pantheon from Go, with the stubs generated from
// proto/ (generated/go):
//
//	interop live [-dump capture.json]   ingest a record batch and a CSV object over
//	                                    TLS gRPC, consume the events over SASL_SSL
//	                                    and check them (needs `scripts/stack env`)
//	interop check capture.json          check captured records offline (the format
//	                                    the TypeScript checker reads too)
//
// It exits 1 naming every missing or wrong header and field.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: interop live [-dump file] [-wait 60s] | interop check file")
	}
	var c *Capture
	var err error
	switch os.Args[1] {
	case "live":
		flags := flag.NewFlagSet("live", flag.ExitOnError)
		dump := flags.String("dump", "", "also write the capture to this file")
		wait := flags.Duration("wait", 60*time.Second, "how long to wait for the events")
		_ = flags.Parse(os.Args[2:])
		var e env
		if e, err = envFromOS(); err != nil {
			fail(err.Error())
		}
		ctx, cancel := context.WithTimeout(context.Background(), *wait+60*time.Second)
		defer cancel()
		c, err = live(ctx, e, *wait)
		if err == nil && *dump != "" {
			err = saveCapture(*dump, c)
		}
	case "check":
		if len(os.Args) != 3 {
			fail("usage: interop check file")
		}
		c, err = loadCapture(os.Args[2])
	default:
		fail("unknown command " + os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
	found := check(c)
	for _, problem := range found {
		fmt.Fprintln(os.Stderr, "FAIL:", problem)
	}
	if len(found) > 0 {
		fail(fmt.Sprintf("%d problems in %d Kafka records of source %s", len(found), len(c.Records), c.Source))
	}
	fmt.Printf("ok: %d Kafka records of source %s (%d DataStored, %d RecordIngested expected) decoded and checked in Go\n",
		len(c.Records), c.Source, len(c.Expected.Objects), len(c.Expected.Records))
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "interop-go:", message)
	os.Exit(1)
}
