package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/registry"
)

var singleObjectMarker = []byte{0xC3, 0x01}

// Decoder turns a record value into a Scan, in either encoding the bridge writes: Avro
// single-object encoding (C3 01 + the writer schema's CRC-64-AVRO fingerprint, little-endian)
// or the Confluent wire format (00 + a big-endian 4-byte schema id).
type Decoder struct {
	byFingerprint map[[8]byte]avro.Schema
	registry      *registry.Client
	mu            sync.Mutex
	byID          map[int]avro.Schema
}

// NewDecoder knows the writer schemas in dir (every v*.avsc) by fingerprint, and asks the
// registry at registryURL (if not empty) for the others by id.
func NewDecoder(dir, registryURL string) (*Decoder, error) {
	d := &Decoder{byFingerprint: map[[8]byte]avro.Schema{}, byID: map[int]avro.Schema{}}
	files, err := filepath.Glob(filepath.Join(dir, "v*.avsc"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("--schemas %s: no v*.avsc files", dir)
	}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--schemas: %w", err)
		}
		// Each version gets a cache of its own: versions share their record names.
		schema, err := avro.ParseBytesWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		fp, err := wireFingerprint(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		d.byFingerprint[fp] = schema
	}
	if registryURL != "" {
		client, err := registry.NewClient(registryURL)
		if err != nil {
			return nil, fmt.Errorf("--registry-url: %w", err)
		}
		d.registry = client
	}
	return d, nil
}

func (d *Decoder) Decode(ctx context.Context, value []byte) (Scan, error) {
	var scan Scan
	var schema avro.Schema
	var body []byte
	switch {
	case len(value) >= 10 && bytes.Equal(value[:2], singleObjectMarker):
		schema = d.byFingerprint[[8]byte(value[2:10])]
		if schema == nil {
			return scan, fmt.Errorf("unknown schema fingerprint %x: a newer schema wrote it; add its .avsc to --schemas", value[2:10])
		}
		body = value[10:]
	case len(value) >= 5 && value[0] == 0:
		var err error
		schema, err = d.registrySchema(ctx, int(binary.BigEndian.Uint32(value[1:5])))
		if err != nil {
			return scan, err
		}
		body = value[5:]
	default:
		return scan, fmt.Errorf("neither Avro single-object encoding nor the registry wire format")
	}
	if err := avro.Unmarshal(schema, body, &scan); err != nil {
		return scan, fmt.Errorf("avro: %w", err)
	}
	return scan, nil
}

func (d *Decoder) registrySchema(ctx context.Context, id int) (avro.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if schema, ok := d.byID[id]; ok {
		return schema, nil
	}
	if d.registry == nil {
		return nil, fmt.Errorf("registry wire format (schema id %d): set --registry-url", id)
	}
	schema, err := d.registry.GetSchema(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("schema id %d: %w", id, err)
	}
	d.byID[id] = schema
	return schema, nil
}

// wireFingerprint is the CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form,
// little-endian, as single-object encoding writes it. hamba/avro (v2.31) keeps logicalType
// in its canonical form, where the Avro specification (and Java, and fastavro) strip it, so
// its own fingerprint of a schema with logical types differs from the one on the wire: take
// the fingerprint of a copy without them, and decode with the schema as it is.
func wireFingerprint(text []byte) ([8]byte, error) {
	var doc any
	if err := json.Unmarshal(text, &doc); err != nil {
		return [8]byte{}, err
	}
	stripped, err := json.Marshal(withoutLogicalTypes(doc))
	if err != nil {
		return [8]byte{}, err
	}
	schema, err := avro.ParseBytesWithCache(stripped, "", &avro.SchemaCache{})
	if err != nil {
		return [8]byte{}, err
	}
	fp, err := schema.FingerprintUsing(avro.CRC64AvroLE)
	if err != nil {
		return [8]byte{}, err
	}
	return [8]byte(fp), nil
}

func withoutLogicalTypes(node any) any {
	switch n := node.(type) {
	case map[string]any:
		out := make(map[string]any, len(n))
		for k, v := range n {
			if k != "logicalType" {
				out[k] = withoutLogicalTypes(v)
			}
		}
		return out
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			out[i] = withoutLogicalTypes(v)
		}
		return out
	default:
		return node
	}
}
