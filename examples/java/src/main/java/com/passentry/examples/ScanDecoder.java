package com.passentry.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.passentry.bridge.v1.ScanEvent;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificDatumReader;

/**
 * Record values to {@link ScanEvent} (the class the Avro Maven plugin generated), in either
 * encoding the bridge writes. Every value is resolved to ScanEvent's schema, whatever version
 * wrote it: Avro skips fields this build does not know and fills the defaults of fields the
 * writer did not have.
 *
 * <ul>
 *   <li>Single-object encoding ({@code C3 01} + fingerprint): Avro's own BinaryMessageDecoder.
 *       It knows every version of the schema folder this jar was built from (they are in the
 *       jar, as writer-schemas/v1.avsc, v2.avsc, ...); a newer one must be added
 *       ({@code --writer-schema}).
 *   <li>Confluent wire format ({@code 00} + 4-byte schema id): the writer schema comes from
 *       the registry ({@code GET <url>/schemas/ids/<id>}), once per id.
 * </ul>
 */
final class ScanDecoder {
  private final BinaryMessageDecoder<ScanEvent> singleObject;
  private final String registryUrl;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  private final ObjectMapper json = new ObjectMapper();
  private final Map<Integer, SpecificDatumReader<ScanEvent>> byId = new HashMap<>();

  ScanDecoder(String registryUrl, List<Path> writerSchemas) throws IOException {
    this.registryUrl = registryUrl == null ? null : registryUrl.split(",")[0].trim().replaceAll("/+$", "");
    SchemaStore.Cache store = new SchemaStore.Cache();
    // Versions are numbered 1..N without gaps (the schema gate checks it).
    for (int version = 1; ; version++) {
      try (InputStream bundled = ScanDecoder.class.getResourceAsStream("/writer-schemas/v" + version + ".avsc")) {
        if (bundled == null) {
          break;
        }
        store.addSchema(new Schema.Parser().parse(bundled));
      }
    }
    for (Path path : writerSchemas) {
      store.addSchema(new Schema.Parser().parse(Files.readString(path)));
    }
    this.singleObject = new BinaryMessageDecoder<>(SpecificData.getForClass(ScanEvent.class), ScanEvent.getClassSchema(), store);
  }

  ScanEvent decode(byte[] value) throws IOException, InterruptedException {
    if (value != null && value.length >= 10 && (value[0] & 0xff) == 0xC3 && value[1] == 0x01) {
      return singleObject.decode(value);
    }
    if (value != null && value.length >= 5 && value[0] == 0) {
      int id = ByteBuffer.wrap(value, 1, 4).getInt();
      return reader(id).read(null, DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null));
    }
    throw new IOException("neither Avro single-object encoding nor the registry wire format");
  }

  private SpecificDatumReader<ScanEvent> reader(int id) throws IOException, InterruptedException {
    SpecificDatumReader<ScanEvent> known = byId.get(id);
    if (known != null) {
      return known;
    }
    if (registryUrl == null) {
      throw new IOException("registry wire format (schema id " + id + "): set --registry-url");
    }
    HttpRequest request = HttpRequest.newBuilder(URI.create(registryUrl + "/schemas/ids/" + id))
        .timeout(Duration.ofSeconds(10))
        .header("Accept", "application/vnd.schemaregistry.v1+json, application/json")
        .build();
    HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
    if (response.statusCode() != 200) {
      throw new IOException("registry: schema id " + id + ": HTTP " + response.statusCode());
    }
    JsonNode body = json.readTree(response.body());
    Schema writer = new Schema.Parser().parse(body.get("schema").asText());
    SpecificDatumReader<ScanEvent> reader = new SpecificDatumReader<>(writer, ScanEvent.getClassSchema(), SpecificData.getForClass(ScanEvent.class));
    byId.put(id, reader);
    return reader;
  }
}
