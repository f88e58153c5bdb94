// print-scans: the Go example consumer of the bridge's scans topics. It reads with
// read_committed (franz-go), decodes single-object or registry-framed Avro (hamba/avro),
// drops repeated scan ids, and prints one JSON line per distinct scan, with the same keys as
// the Python and Java examples.
//
//	go build -o print-scans . && ./print-scans --bootstrap localhost:9092 --topic passentry.scans \
//	    --schemas ../../schemas/passentry_scan [--registry-url http://registry:8081]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type line struct {
	ScanID         string  `json:"scanId"`
	CreatedAt      string  `json:"createdAt"`
	ReaderID       string  `json:"readerId"`
	Status         string  `json:"status"`
	ScanType       string  `json:"scanType"`
	ValidationType string  `json:"validationType"`
	PassID         *string `json:"passId"`
	ReaderName     *string `json:"readerName"`
	SourceID       string  `json:"sourceId"`
	Partition      int32   `json:"partition"`
	Offset         int64   `json:"offset"`
}

type topics []string

func (t *topics) String() string     { return strings.Join(*t, ",") }
func (t *topics) Set(v string) error { *t = append(*t, v); return nil }

func main() {
	var topicList topics
	bootstrap := flag.String("bootstrap", "localhost:9092", "Kafka bootstrap servers")
	flag.Var(&topicList, "topic", "topic to read (repeatable)")
	group := flag.String("group", "passentry-scans-example", "consumer group")
	schemas := flag.String("schemas", "../../schemas/passentry_scan", "folder of v*.avsc writer schemas")
	registryURL := flag.String("registry-url", "", "schema registry (registry wire format)")
	window := flag.Duration("dedupe-window", time.Hour, "how long a scan id is remembered")
	maxRecords := flag.Int("max-records", 0, "stop after reading this many records (0: never)")
	timeout := flag.Duration("timeout", 0, "stop when no record came for this long (0: never)")
	flag.Parse()
	if len(topicList) == 0 {
		fail(errors.New("--topic is required"))
	}
	if err := run(*bootstrap, topicList, *group, *schemas, *registryURL, *window, *maxRecords, *timeout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "print-scans:", err)
	os.Exit(1)
}

func run(bootstrap string, topicList []string, group, schemas, registryURL string,
	window time.Duration, maxRecords int, timeout time.Duration) error {
	decoder, err := NewDecoder(schemas, registryURL)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topicList...),
		// Only committed records: the bridge writes in transactions.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Offsets are committed for records marked after they were printed: at least once.
		kgo.AutoCommitMarks(),
	)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer client.Close()
	defer func() { _ = client.CommitMarkedOffsets(context.Background()) }()

	dedupe := NewDeduper(window)
	out := json.NewEncoder(os.Stdout)
	read, printed := 0, 0
	last := time.Now()
	for maxRecords == 0 || read < maxRecords {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := client.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			break
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				fmt.Fprintf(os.Stderr, "print-scans: %s[%d]: %v\n", fe.Topic, fe.Partition, fe.Err)
			}
		}
		if fetches.NumRecords() == 0 {
			if timeout > 0 && time.Since(last) > timeout {
				break
			}
			continue
		}
		last = time.Now()
		for _, record := range fetches.Records() {
			if maxRecords != 0 && read >= maxRecords {
				break
			}
			read++
			scan, err := decoder.Decode(ctx, record.Value)
			if err != nil {
				// Not marked, so not committed: a fixed consumer reads it again.
				return fmt.Errorf("%s[%d]@%d: %w", record.Topic, record.Partition, record.Offset, err)
			}
			first, err := dedupe.FirstTime(scan.ScanID)
			if err != nil {
				return err
			}
			if first {
				if err := out.Encode(toLine(scan, record)); err != nil {
					return err
				}
				printed++
			}
			client.MarkCommitRecords(record)
		}
	}
	fmt.Fprintf(os.Stderr, "read %d records, printed %d scans, skipped %d repeats\n", read, printed, dedupe.Repeats)
	if maxRecords != 0 && read < maxRecords {
		return fmt.Errorf("timed out after %d of %d records", read, maxRecords)
	}
	return nil
}

func toLine(scan Scan, record *kgo.Record) line {
	var readerName *string
	if scan.Reader != nil {
		readerName = scan.Reader.Name
	}
	return line{
		ScanID:         scan.ScanID,
		CreatedAt:      scan.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		ReaderID:       scan.ReaderID,
		Status:         scan.Status,
		ScanType:       scan.ScanType,
		ValidationType: scan.ValidationType,
		PassID:         scan.PassID,
		ReaderName:     readerName,
		SourceID:       scan.SourceID,
		Partition:      record.Partition,
		Offset:         record.Offset,
	}
}
