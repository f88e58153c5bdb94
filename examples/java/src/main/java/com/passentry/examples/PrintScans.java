package com.passentry.examples;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.passentry.bridge.v1.ScanEvent;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * The Java example consumer of the bridge's scans topics: reads with read_committed, decodes
 * into the generated {@link ScanEvent}, drops repeated scan ids, and prints one JSON line per
 * distinct scan with the same keys as the Python and Go examples, plus {@code avro}: the whole
 * record as Avro renders it (every field of the schema this build was generated from).
 *
 * <pre>
 * java -jar target/scan-consumer.jar --bootstrap localhost:9092 --topic passentry.scans
 *     [--registry-url http://registry:8081] [--writer-schema v2.avsc]
 * </pre>
 */
public final class PrintScans {
  private static final DateTimeFormatter RFC3339 =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

  public static void main(String[] args) throws Exception {
    String bootstrap = "localhost:9092";
    String group = "passentry-scans-example";
    String registryUrl = null;
    List<String> topics = new ArrayList<>();
    List<Path> writerSchemas = new ArrayList<>();
    Duration window = Duration.ofHours(1);
    long maxRecords = 0;
    Duration timeout = null;
    for (int i = 0; i < args.length; i++) {
      String value = i + 1 < args.length ? args[i + 1] : null;
      switch (args[i]) {
        case "--bootstrap" -> bootstrap = value;
        case "--topic" -> topics.add(value);
        case "--group" -> group = value;
        case "--registry-url" -> registryUrl = value;
        case "--writer-schema" -> writerSchemas.add(Path.of(value));
        case "--dedupe-window-s" -> window = Duration.ofMillis((long) (Double.parseDouble(value) * 1000));
        case "--max-records" -> maxRecords = Long.parseLong(value);
        case "--timeout-s" -> timeout = Duration.ofMillis((long) (Double.parseDouble(value) * 1000));
        default -> fail("unknown argument " + args[i]);
      }
      i++;
      if (value == null) {
        fail(args[i - 1] + " needs a value");
      }
    }
    if (topics.isEmpty()) {
      fail("--topic is required");
    }

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    // Only committed records: the bridge writes in transactions.
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    // Offsets are committed after the records were printed: at least once.
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");

    ScanDecoder decoder = new ScanDecoder(registryUrl, writerSchemas);
    ScanDeduper dedupe = new ScanDeduper(window);
    ObjectMapper json = new ObjectMapper();
    long read = 0;
    long printed = 0;
    Instant last = Instant.now();
    try (KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(props, new StringDeserializer(), new ByteArrayDeserializer())) {
      consumer.subscribe(topics);
      // The next offset of each partition after the records printed (or skipped as repeats).
      Map<TopicPartition, OffsetAndMetadata> handled = new HashMap<>();
      outer:
      while (maxRecords == 0 || read < maxRecords) {
        ConsumerRecords<String, byte[]> records = consumer.poll(Duration.ofMillis(500));
        if (records.isEmpty()) {
          if (timeout != null && Duration.between(last, Instant.now()).compareTo(timeout) > 0) {
            break;
          }
          continue;
        }
        last = Instant.now();
        for (ConsumerRecord<String, byte[]> record : records) {
          read++;
          ScanEvent scan;
          try {
            scan = decoder.decode(record.value());
          } catch (Exception e) {
            // Not committed: a fixed consumer reads it again.
            fail(record.topic() + "[" + record.partition() + "]@" + record.offset() + ": " + e);
            return;
          }
          if (dedupe.firstTime(scan.getScanId())) {
            System.out.println(json.writeValueAsString(line(json, scan, record)));
            printed++;
          }
          handled.put(new TopicPartition(record.topic(), record.partition()), new OffsetAndMetadata(record.offset() + 1));
          if (maxRecords != 0 && read >= maxRecords) {
            break outer;
          }
        }
        consumer.commitSync(handled);
      }
      System.out.flush();
      if (!handled.isEmpty()) {
        consumer.commitSync(handled);
      }
    }
    System.out.flush();
    System.err.printf("read %d records, printed %d scans, skipped %d repeats%n", read, printed, dedupe.repeats);
    if (maxRecords != 0 && read < maxRecords) {
      fail("timed out after " + read + " of " + maxRecords + " records");
    }
  }

  static ObjectNode line(ObjectMapper json, ScanEvent scan, ConsumerRecord<String, byte[]> record) throws Exception {
    ObjectNode out = json.createObjectNode();
    out.put("scanId", scan.getScanId().toString());
    out.put("createdAt", RFC3339.format(scan.getCreatedAt()));
    out.put("readerId", scan.getReaderId());
    out.put("status", scan.getStatus());
    out.put("scanType", scan.getScanType());
    out.put("validationType", scan.getValidationType());
    out.put("passId", scan.getPassId());
    out.put("readerName", scan.getReader() == null ? null : scan.getReader().getName());
    out.put("sourceId", scan.getSourceId());
    out.put("partition", record.partition());
    out.put("offset", record.offset());
    out.set("avro", json.readTree(scan.toString()));
    return out;
  }

  private static void fail(String message) {
    System.err.println("print-scans: " + message);
    System.exit(1);
  }
}
