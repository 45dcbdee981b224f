#!/usr/bin/env node
// Reads les records from the JetStream stream "LES" with a durable pull
// consumer and prints one JSON object per item on stdout: the same object as
// `les tail` prints ("JSON view of items" in docs/wire-format.md). The record
// format is specified in docs/wire-format.md; this file is a complete decoder
// for versions 1 and 2 of it, using only Node's standard library, the nats package and
// fzstd (zstd, les' default compression on remote streams, for Node.js before 22.15);
// s2 (Snappy blocks, the default on the embedded stream) it decodes itself.
"use strict";

const zlib = require("node:zlib");
const { isUtf8 } = require("node:buffer");
const { parseArgs } = require("node:util");
const { connect, AckPolicy, DeliverPolicy } = require("nats");

const STREAM = "LES";
const HEADER_SIZE = 48;
const SIGNALS = { 1: "metric", 2: "distribution", 3: "log", 4: "span" };
const KINDS = ["gauge", "counter", "sample", "gauge_delta", "set"];
const WINDOWS = ["none", "minute", "hour", "day"];
const SPAN_KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];
const STATUS_CODES = ["unset", "ok", "error"];
const COMPRESSION = { NONE: 0, GZIP: 1, ZSTD: 2, S2: 3 };

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
  str() { return text(this.bytes()); }
  tags() { // an object in list order; of a repeated key the last value wins
    const pairs = [];
    for (let n = this.len(); n > 0; n--) pairs.push([this.str(), this.str()]);
    return Object.fromEntries(pairs); // unlike out[k] = v, also right for the key "__proto__"
  }
}

// ---- JSON view (docs/wire-format.md, "JSON view of items") -----------------
// The same objects as `les tail` prints (Go: internal/format/jsonl).

// JSON has no NaN or infinities: they are null.
function num(v) { return Number.isFinite(v) ? v : null; }

// text decodes bytes as les does: valid UTF-8 is kept and every byte that is
// not part of a valid sequence becomes one U+FFFD. (Buffer.toString replaces
// a cut-off sequence such as e2 82 with a single U+FFFD instead.)
function text(b) {
  if (isUtf8(b)) return b.toString("utf8");
  const out = [];
  for (let i = 0; i < b.length;) {
    const n = utf8SeqLen(b, i);
    if (n === 0) { out.push(0xef, 0xbf, 0xbd); i++; } else { for (const end = i + n; i < end; i++) out.push(b[i]); }
  }
  return Buffer.from(out).toString("utf8");
}

// utf8SeqLen returns the length of the well-formed UTF-8 sequence at b[i],
// or 0 if there is none (Unicode table 3-7).
function utf8SeqLen(b, i) {
  const c = b[i];
  let n, lo = 0x80, hi = 0xbf;
  if (c < 0x80) return 1;
  else if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) { n = 3; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 4; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
  else return 0;
  if (i + n > b.length || b[i + 1] < lo || b[i + 1] > hi) return 0;
  for (let j = 2; j < n; j++) if (b[i + j] < 0x80 || b[i + j] > 0xbf) return 0;
  return n;
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

// percentileKey names quantile q "p" + 100·q, rounded to six decimals and
// without trailing zeros: 0.5 -> "p50", 0.999 -> "p99.9", 1 -> "p100".
function percentileKey(q) {
  let p = q * 100;
  if (!Number.isFinite(p)) return "pNaN";
  p *= 1e6;
  p = (Math.sign(p) * Math.round(Math.abs(p))) / 1e6; // halves away from zero, like Go's math.Round
  return "p" + plainDecimal(p);
}

// plainDecimal formats v with the fewest digits that read back as v and
// never with an exponent (Go's strconv.FormatFloat(v, 'f', -1, 64)).
function plainDecimal(v) {
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  if (Object.is(v, -0)) return "-0";
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(String(v));
  if (!m) return String(v);
  const [, sign, first, rest = "", e] = m;
  const exp = Number(e);
  if (exp >= 0) return sign + (first + rest).padEnd(exp + 1, "0");
  return sign + "0." + "0".repeat(-exp - 1) + first + rest;
}

// decodeItem reads one item of the record's signal and returns it as the
// object of the JSON view, with its fields in the same order as les tail.
function decodeItem(r, type, version) {
  switch (type) {
    case "metric": {
      const kind = r.u8(), window = r.u8();
      const name = r.str(), source = r.str(), ts = r.varint(), value = r.f64();
      const item = { type, name, value: num(value), kind: KINDS[kind] ?? "unknown" };
      if (window !== 0) item.window = WINDOWS[window] ?? "unknown"; // omitted when none
      return Object.assign(item, { timestamp: rfc3339(ts), source, tags: r.tags() });
    }
    case "distribution": {
      const window = WINDOWS[r.u8()] ?? "unknown", correction = Number(BigInt.asUintN(32, r.uvarint()));
      const name = r.str(), source = r.str(), ts = r.varint();
      const count = r.f64(), sum = r.f64(), min = r.f64(), max = r.f64();
      const centroids = [];
      for (let n = r.len(); n > 0; n--) { const value = r.f64(), c = r.f64(); centroids.push([num(value), num(c)]); }
      const percentiles = {};
      for (let n = r.len(); n > 0; n--) { const q = r.f64(); percentiles[percentileKey(q)] = num(r.f64()); }
      return { type, name, timestamp: rfc3339(ts), window, source, tags: r.tags(),
        count: num(count), sum: num(sum), min: num(min), max: num(max),
        avg: count !== 0 ? num(sum / count) : null, percentiles, centroids, correction };
    }
    case "log": {
      const ts = r.varint(), source = r.str(), request_id = r.str(), level = r.str();
      const message = r.str(); // raw bytes; each invalid UTF-8 byte becomes U+FFFD
      return { type, timestamp: rfc3339(ts), source, request_id, level, message, attrs: r.tags() };
    }
    case "span": {
      const name = r.str(), trace_id = r.str(), span_id = r.str(), parent_id = r.str(), source = r.str();
      const start = rfc3339(r.varint()), duration = r.varint();
      const item = { type, name, trace_id, span_id, parent_id, timestamp: start, start,
        duration_ms: Number(duration) / 1e6, source, tags: r.tags() };
      if (version < 2) return item;
      // Version 2: kind, status, events and links; printed only when set.
      const kind = r.u8(), status = r.u8(), status_message = r.str();
      const events = [], links = [];
      for (let n = r.len(); n > 0; n--) {
        const name = r.str(), ts = r.varint();
        events.push({ name, timestamp: rfc3339(ts), attrs: r.tags() });
      }
      for (let n = r.len(); n > 0; n--) {
        const trace_id = r.str(), span_id = r.str();
        links.push({ trace_id, span_id, attrs: r.tags() });
      }
      if (kind === 0 && status === 0 && status_message === "" && events.length === 0 && links.length === 0) return item;
      return Object.assign(item, { kind: SPAN_KINDS[kind] ?? "unknown", status_code: STATUS_CODES[status] ?? "unknown",
        status_message, events, links });
    }
  }
}

// decodeSeriesItems reads a series-encoded metrics body: the string
// table, the series table (kind, window, then the numbers of the name,
// source and tag strings), then per item the series index, the timestamp
// as a delta from the previous item's (the first from 0) and the value.
function decodeSeriesItems(r, count, items) {
  const strs = [];
  for (let n = r.len(); n > 0; n--) strs.push(r.str());
  const str = () => {
    const i = r.uvarint();
    if (i >= BigInt(strs.length)) throw new CorruptError(`string ${i} of ${strs.length}`);
    return strs[Number(i)];
  };
  const table = [];
  for (let n = r.len(); n > 0; n--) {
    const kind = r.u8(), window = r.u8(), name = str(), source = str();
    const pairs = [];
    for (let t = r.len(); t > 0; t--) pairs.push([str(), str()]);
    table.push({ kind, window, name, source, tags: Object.fromEntries(pairs) });
  }
  let ts = 0n;
  for (let i = 0; i < count; i++) {
    const idx = r.uvarint();
    ts = BigInt.asIntN(64, ts + r.varint());
    const value = r.f64();
    if (idx >= BigInt(table.length)) throw new CorruptError(`item ${i}: series ${idx} of ${table.length}`);
    const s = table[Number(idx)];
    const item = { type: "metric", name: s.name, value: num(value), kind: KINDS[s.kind] ?? "unknown" };
    if (s.window !== 0) item.window = WINDOWS[s.window] ?? "unknown";
    items.push(Object.assign(item, { timestamp: rfc3339(ts), source: s.source, tags: { ...s.tags } }));
  }
}

// decodeRecord returns { header, items } or throws.
function decodeRecord(rec) {
  if (rec.length < HEADER_SIZE) throw new CorruptError("record shorter than its header");
  if (rec.toString("latin1", 0, 4) !== "LESR") throw new CorruptError("not a les record (bad magic)");
  const version = rec[4];
  // Version 2 differs from 1 only in span items (kind, status, events, links).
  if (version !== 1 && version !== 2) throw new VersionError(`unsupported record version ${version}`);
  const header = {
    signal: rec[5], encoding: rec[6], compression: rec[7],
    producer: rec.readBigUInt64LE(8), seq: rec.readBigUInt64LE(16), count: rec.readUInt32LE(24),
    minTime: rec.readBigInt64LE(28), maxTime: rec.readBigInt64LE(36), bodyLen: rec.readUInt32LE(44),
  };
  header.id = header.producer.toString(16) + "-" + header.seq.toString(); // the batch id
  const type = SIGNALS[header.signal];
  if (!type) throw new CorruptError(`unknown signal ${header.signal}`);
  // Encoding 1: every item carries its series; 2 ("series", metrics
  // only): a table of the record's series, then index + delta + value.
  if (header.encoding !== 1 && !(header.encoding === 2 && type === "metric")) {
    throw new CorruptError(`unknown encoding ${header.encoding} for ${type} records`);
  }
  if (header.bodyLen !== rec.length - HEADER_SIZE) throw new CorruptError("body length mismatch");
  let body = rec.subarray(HEADER_SIZE);
  const maxOutputLength = 64 << 20; // same bound as the Go decoder
  if (header.compression === COMPRESSION.GZIP) {
    body = zlib.gunzipSync(body, { maxOutputLength });
  } else if (header.compression === COMPRESSION.ZSTD) {
    body = zstdDecompress(body, maxOutputLength);
  } else if (header.compression === COMPRESSION.S2) {
    body = snappyDecompress(body, maxOutputLength);
  } else if (header.compression !== COMPRESSION.NONE) {
    throw new CorruptError(`unknown compression ${header.compression}`);
  }
  const r = new Reader(body);
  const items = [];
  if (header.encoding === 2) {
    decodeSeriesItems(r, header.count, items);
  } else {
    for (let i = 0; i < header.count; i++) items.push(decodeItem(r, type, version));
  }
  if (r.off !== body.length) throw new CorruptError(`${body.length - r.off} trailing bytes`);
  return { header, items };
}

// zstdDecompress uses Node's zstd (22.15 and newer) or else fzstd, a pure
// JavaScript decoder (pinned in package-lock.json).
function zstdDecompress(body, maxOutputLength) {
  if (typeof zlib.zstdDecompressSync === "function") return zlib.zstdDecompressSync(body, { maxOutputLength });
  let fzstd;
  try {
    fzstd = require("fzstd");
  } catch {
    throw new ZstdUnsupportedError(`this Node.js (${process.version}) has no zstd support and the fzstd ` +
      "package is not installed: run `npm ci` here, set `compression: gzip` in les.yaml, or use Node.js >= 22.15");
  }
  // The frame header declares the content size (les always writes it):
  // refuse a record that would decompress beyond the bound before doing it.
  const size = zstdContentSize(body);
  if (size !== undefined && size > maxOutputLength) throw new CorruptError(`zstd body of ${size} bytes exceeds ${maxOutputLength}`);
  let out;
  try {
    out = fzstd.decompress(body);
  } catch (e) {
    throw new CorruptError(`zstd: ${e.message}`);
  }
  if (out.length > maxOutputLength) throw new CorruptError(`zstd body of ${out.length} bytes exceeds ${maxOutputLength}`);
  return Buffer.from(out.buffer, out.byteOffset, out.length);
}

// snappyDecompress decodes an s2 body: a Snappy block (the raw format of
// github.com/google/snappy format_description.txt, no framing), which les
// writes for its embedded stream by default. The block is a varint of the
// decoded length, then elements: a literal (tag 0b00) or a copy of earlier
// output with a 1-, 2- or 4-byte offset (tags 0b01, 0b10, 0b11).
function snappyDecompress(src, maxOutputLength) {
  let pos = 0, len = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= src.length || shift > 28) throw new CorruptError("snappy: bad length");
    const b = src[pos++];
    len += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (len > maxOutputLength) throw new CorruptError(`snappy body of ${len} bytes exceeds ${maxOutputLength}`);
  const out = Buffer.allocUnsafe(len);
  let d = 0;
  const need = (n) => { if (pos + n > src.length) throw new CorruptError("snappy: truncated"); };
  while (pos < src.length) {
    const tag = src[pos++];
    let n, off;
    switch (tag & 3) {
      case 0: { // literal; lengths above 60 follow in 1-4 little-endian bytes
        n = tag >> 2;
        if (n >= 60) {
          const k = n - 59;
          need(k);
          n = 0;
          for (let i = 0; i < k; i++) n += src[pos + i] * 2 ** (8 * i);
          pos += k;
        }
        n += 1;
        need(n);
        if (d + n > len) throw new CorruptError("snappy: literal past the end");
        src.copy(out, d, pos, pos + n);
        pos += n;
        d += n;
        continue;
      }
      case 1: need(1); n = 4 + ((tag >> 2) & 7); off = ((tag >> 5) << 8) | src[pos]; pos += 1; break;
      case 2: need(2); n = 1 + (tag >> 2); off = src.readUInt16LE(pos); pos += 2; break;
      case 3: need(4); n = 1 + (tag >> 2); off = src.readUInt32LE(pos); pos += 4; break;
    }
    if (off === 0 || off > d || d + n > len) throw new CorruptError("snappy: bad copy");
    for (let i = 0; i < n; i++, d++) out[d] = out[d - off]; // may overlap: byte by byte
  }
  if (d !== len) throw new CorruptError(`snappy: ${d} of ${len} bytes`);
  return out;
}

// zstdContentSize reads Frame_Content_Size from a zstd frame header (RFC
// 8878, 3.1.1.1), or returns undefined when the frame does not declare it.
function zstdContentSize(b) {
  if (b.length < 5 || b.readUInt32LE(0) !== 0xfd2fb528) return undefined;
  const fhd = b[4];
  const fcsFlag = fhd >> 6, single = (fhd >> 5) & 1, didFlag = fhd & 3;
  const fcsSize = [single ? 1 : 0, 2, 4, 8][fcsFlag];
  if (fcsSize === 0) return undefined;
  const off = 5 + (single ? 0 : 1) + [0, 1, 2, 4][didFlag];
  if (b.length < off + fcsSize) return undefined;
  switch (fcsSize) {
    case 1: return b[off];
    case 2: return b.readUInt16LE(off) + 256;
    case 4: return b.readUInt32LE(off);
    default: return Number(b.readBigUInt64LE(off));
  }
}

// ---- Consuming ---------------------------------------------------------------

// connectOptions turns NATS_URL into options for connect(): credentials in
// the URL (nats://TOKEN@host:4222 for a token, nats://USER:PASS@host:4222)
// are not read by the nats package from a server URL, so they are taken out
// and passed as token or user and pass.
function connectOptions(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return { servers: url };
  }
  const o = {};
  if (u.username && u.password) Object.assign(o, { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) });
  else if (u.username) o.token = decodeURIComponent(u.username);
  u.username = "";
  u.password = "";
  o.servers = u.toString().replace(/\/$/, "");
  return o;
}

const USAGE = `usage: node consume.js [--durable NAME] [--subject FILTER] [--from-start] [--limit N] [--data-dir DIR]

  --durable NAME    durable consumer name (default node-example); it keeps its
                    position in the stream between runs
  --subject FILTER  NATS subject filter (default les.*.*.*: every origin,
                    signal and partition; dead letters never match it)
  --from-start      (re)create the durable at the first record of the stream;
                    without it a new durable starts at new records
  --limit N         exit after printing N items

  --data-dir DIR    the data directory of the les up (default $LES_DATA_DIR,
                    else ./les-data): its stream.creds holds the token the
                    embedded stream requires

NATS_URL selects the server (default nats://127.0.0.1:4222); NATS_TOKEN, when
set, is sent instead of the token in stream.creds.`;

// streamToken is the token les up keeps in <data dir>/stream.creds (a line
// "token: ..."), or undefined when there is no such file.
function streamToken(dataDir) {
  let text;
  try {
    text = require("node:fs").readFileSync(require("node:path").join(dataDir, "stream.creds"), "utf8");
  } catch (e) {
    if (e.code === "ENOENT") return undefined;
    throw e;
  }
  const m = /^\s*token:\s*(\S+)/m.exec(text);
  return m ? m[1] : undefined;
}

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
    "data-dir": { type: "string", default: process.env.LES_DATA_DIR || "./les-data" },
    help: { type: "boolean", short: "h", default: false },
  } });
  if (a.help) { console.log(USAGE); return; }
  const limit = a.limit === undefined ? Infinity : Number(a.limit);
  if (limit !== Infinity && !(Number.isInteger(limit) && limit > 0)) throw new Error("--limit wants a positive integer");

  const url = process.env.NATS_URL || "nats://127.0.0.1:4222";
  // A token: NATS_TOKEN, else the one in NATS_URL, else stream.creds.
  const conn = connectOptions(url);
  if (process.env.NATS_TOKEN) conn.token = process.env.NATS_TOKEN;
  else if (conn.token === undefined && conn.user === undefined) conn.token = streamToken(a["data-dir"]);
  const nc = await connect({ ...conn, name: "les-node-example" }).catch((e) => {
    throw new Error(`cannot connect to ${conn.servers} (is les up running? set NATS_URL otherwise): ${e.message}`);
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

module.exports = { decodeRecord, rfc3339, percentileKey, text };

if (require.main === module) {
  main().catch((e) => {
    console.error(`consume.js: ${e.message}`);
    process.exit(1);
  });
}
