#!/usr/bin/env node
// Reads les records from the JetStream stream "LES" with a durable pull
// consumer and prints one JSON object per item on stdout. The record format
// is specified in docs/wire-format.md; this file is a complete decoder for
// version 1 of it, using only Node's standard library and the nats package.
"use strict";

const zlib = require("node:zlib");
const { parseArgs } = require("node:util");
const { connect, AckPolicy, DeliverPolicy } = require("nats");

const STREAM = "LES";
const HEADER_SIZE = 48;
const SIGNALS = { 1: "metric", 2: "distribution", 3: "log", 4: "span" };
const KINDS = ["gauge", "counter", "sample", "gauge_delta", "set"];
const WINDOWS = ["none", "minute", "hour", "day"];
const COMPRESSION = { NONE: 0, GZIP: 1, ZSTD: 2 };

// ---- Decoding (docs/wire-format.md) ----------------------------------------

class CorruptError extends Error {}
class VersionError extends Error {}
class ZstdUnsupportedError extends Error {}

// Reader walks a body; every read checks bounds and throws CorruptError.
class Reader {
  constructor(buf) { this.buf = buf; this.off = 0; }
  need(n) {
    if (this.buf.length - this.off < n) throw new CorruptError(`body truncated at byte ${this.off}`);
  }
  u8() { this.need(1); return this.buf[this.off++]; }
  uvarint() { // unsigned LEB128, at most 10 bytes, as a BigInt
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.u8();
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) {
        if (v > 0xffffffffffffffffn) throw new CorruptError("uvarint overflows 64 bits");
        return v;
      }
    }
    throw new CorruptError("uvarint longer than 10 bytes");
  }
  varint() { const u = this.uvarint(); return (u >> 1n) ^ -(u & 1n); } // zigzag
  len() {
    const n = this.uvarint();
    if (n > BigInt(this.buf.length - this.off)) throw new CorruptError(`length ${n} exceeds the body`);
    return Number(n);
  }
  f64() { this.need(8); const v = this.buf.readDoubleLE(this.off); this.off += 8; return v; }
  bytes() { const n = this.len(); const b = this.buf.subarray(this.off, this.off + n); this.off += n; return b; }
  str() { return this.bytes().toString("utf8"); }
  tags() {
    const out = {};
    for (let n = this.len(); n > 0; n--) { const k = this.str(); out[k] = this.str(); }
    return out;
  }
}

// JSON has no NaN or infinities; print them as strings like les tail does.
function num(v) {
  if (Number.isFinite(v)) return v;
  return Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

// Unix nanoseconds (BigInt) to RFC 3339 in UTC with up to nine fraction
// digits and no trailing zeros (Go's time.RFC3339Nano).
function rfc3339(ns) {
  let secs = ns / 1000000000n;
  let frac = ns % 1000000000n;
  if (frac < 0n) { frac += 1000000000n; secs -= 1n; }
  const base = new Date(Number(secs) * 1000).toISOString().slice(0, 19);
  const f = frac === 0n ? "" : "." + frac.toString().padStart(9, "0").replace(/0+$/, "");
  return base + f + "Z";
}

function decodeItem(r, type) {
  switch (type) {
    case "metric": {
      const kind = KINDS[r.u8()] || "unknown", window = WINDOWS[r.u8()] || "unknown";
      const name = r.str(), source = r.str(), ts = r.varint(), value = num(r.f64());
      return { type, name, value, kind, window, timestamp: rfc3339(ts), source, tags: r.tags() };
    }
    case "distribution": {
      const window = WINDOWS[r.u8()] || "unknown", correction = Number(r.uvarint());
      const name = r.str(), source = r.str(), ts = r.varint();
      const count = num(r.f64()), sum = num(r.f64()), min = num(r.f64()), max = num(r.f64());
      const centroids = [];
      for (let n = r.len(); n > 0; n--) centroids.push({ value: num(r.f64()), count: num(r.f64()) });
      const quantiles = [];
      for (let n = r.len(); n > 0; n--) quantiles.push({ q: num(r.f64()), value: num(r.f64()) });
      return { type, name, window, correction, timestamp: rfc3339(ts), source, tags: r.tags(),
        count, sum, min, max, centroids, quantiles };
    }
    case "log": {
      const ts = r.varint(), source = r.str(), request_id = r.str(), level = r.str();
      const message = r.str(); // raw bytes; invalid UTF-8 becomes U+FFFD
      return { type, timestamp: rfc3339(ts), source, request_id, level, message, tags: r.tags() };
    }
    case "span": {
      const name = r.str(), trace_id = r.str(), span_id = r.str(), parent_id = r.str(), source = r.str();
      const start = r.varint(), duration = r.varint();
      return { type, name, trace_id, span_id, parent_id, timestamp: rfc3339(start),
        duration_ns: Number(duration), source, tags: r.tags() };
    }
  }
}

// decodeRecord returns { header, items } or throws.
function decodeRecord(rec) {
  if (rec.length < HEADER_SIZE) throw new CorruptError("record shorter than its header");
  if (rec.toString("latin1", 0, 4) !== "LESR") throw new CorruptError("not a les record (bad magic)");
  const version = rec[4];
  if (version !== 1) throw new VersionError(`unsupported record version ${version}`);
  const header = {
    signal: rec[5], encoding: rec[6], compression: rec[7],
    producer: rec.readBigUInt64LE(8), seq: rec.readBigUInt64LE(16), count: rec.readUInt32LE(24),
    minTime: rec.readBigInt64LE(28), maxTime: rec.readBigInt64LE(36), bodyLen: rec.readUInt32LE(44),
  };
  header.id = header.producer.toString(16) + "-" + header.seq.toString(); // the batch id
  const type = SIGNALS[header.signal];
  if (!type) throw new CorruptError(`unknown signal ${header.signal}`);
  if (header.encoding !== 1) throw new CorruptError(`unknown encoding ${header.encoding}`);
  if (header.bodyLen !== rec.length - HEADER_SIZE) throw new CorruptError("body length mismatch");
  let body = rec.subarray(HEADER_SIZE);
  const maxOutputLength = 64 << 20; // same bound as the Go decoder
  if (header.compression === COMPRESSION.GZIP) {
    body = zlib.gunzipSync(body, { maxOutputLength });
  } else if (header.compression === COMPRESSION.ZSTD) {
    if (typeof zlib.zstdDecompressSync !== "function") {
      throw new ZstdUnsupportedError(`this Node.js (${process.version}) has no zstd support: ` +
        "set `compression: gzip` or `compression: none` in les.yaml, or use Node.js >= 22.15");
    }
    body = zlib.zstdDecompressSync(body, { maxOutputLength });
  } else if (header.compression !== COMPRESSION.NONE) {
    throw new CorruptError(`unknown compression ${header.compression}`);
  }
  const r = new Reader(body);
  const items = [];
  for (let i = 0; i < header.count; i++) items.push(decodeItem(r, type));
  if (r.off !== body.length) throw new CorruptError(`${body.length - r.off} trailing bytes`);
  return { header, items };
}

// ---- Consuming ---------------------------------------------------------------

const USAGE = `usage: node consume.js [--durable NAME] [--subject FILTER] [--from-start] [--limit N]

  --durable NAME    durable consumer name (default node-example); it keeps its
                    position in the stream between runs
  --subject FILTER  NATS subject filter (default les.*.*.*: every origin,
                    signal and partition; dead letters never match it)
  --from-start      (re)create the durable at the first record of the stream;
                    without it a new durable starts at new records
  --limit N         exit after printing N items

NATS_URL selects the server (default nats://127.0.0.1:4222).`;

async function openConsumer(nc, o) {
  const jsm = await nc.jetstreamManager();
  const exists = await jsm.consumers.info(STREAM, o.durable).then(() => true, (e) => {
    if (e.api_error?.err_code === 10014) return false; // consumer not found
    throw e;
  });
  if (exists && o.fromStart) await jsm.consumers.delete(STREAM, o.durable);
  if (!exists || o.fromStart) {
    await jsm.consumers.add(STREAM, {
      durable_name: o.durable,
      filter_subject: o.subject,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: o.fromStart ? DeliverPolicy.All : DeliverPolicy.New,
    });
  }
  return nc.jetstream().consumers.get(STREAM, o.durable);
}

async function main() {
  const { values: a } = parseArgs({ options: {
    durable: { type: "string", default: "node-example" },
    subject: { type: "string", default: "les.*.*.*" },
    "from-start": { type: "boolean", default: false },
    limit: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  } });
  if (a.help) { console.log(USAGE); return; }
  const limit = a.limit === undefined ? Infinity : Number(a.limit);
  if (limit !== Infinity && !(Number.isInteger(limit) && limit > 0)) throw new Error("--limit wants a positive integer");

  const url = process.env.NATS_URL || "nats://127.0.0.1:4222";
  const nc = await connect({ servers: url, name: "les-node-example" }).catch((e) => {
    throw new Error(`cannot connect to ${url} (is les up running? set NATS_URL otherwise): ${e.message}`);
  });
  const consumer = await openConsumer(nc, { durable: a.durable, subject: a.subject, fromStart: a["from-start"] });
  const messages = await consumer.consume({ max_messages: 64 });
  process.once("SIGINT", () => messages.stop());
  process.once("SIGTERM", () => messages.stop());

  let printed = 0;
  for await (const m of messages) {
    if (m.subject.split(".")[1] === "dlq") { m.ack(); continue; } // not item records
    let rec;
    try {
      rec = decodeRecord(Buffer.from(m.data));
    } catch (e) {
      if (e instanceof VersionError) { // written by a newer les: upgrade this reader
        messages.stop();
        throw new Error(`${m.subject} seq ${m.seq}: ${e.message}; left unacknowledged`);
      }
      console.error(`${m.subject} seq ${m.seq}: skipping record: ${e.message}`);
      if (e instanceof ZstdUnsupportedError) await m.ackAck();
      else m.term(); // corrupt: redelivering cannot help
      continue;
    }
    const room = limit - printed;
    for (const item of rec.items.slice(0, room)) process.stdout.write(JSON.stringify(item) + "\n");
    printed += Math.min(room, rec.items.length);
    // A record cut short by --limit stays unacknowledged so the next run sees all of it.
    if (rec.items.length <= room) await m.ackAck();
    else m.nak();
    if (printed >= limit) break;
  }
  messages.stop();
  await nc.drain();
}

module.exports = { decodeRecord, rfc3339 };

if (require.main === module) {
  main().catch((e) => {
    console.error(`consume.js: ${e.message}`);
    process.exit(1);
  });
}
