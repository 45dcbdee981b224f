// An AWS Lambda handler (Node.js 20+, ES module) that emits metrics, an
// event, a log record and an EMF document to the les extension on
// loopback, with the standard library only (node:dgram). Nothing here can
// fail the function: every send is one UDP datagram, and an error (no
// agent listening, a full socket buffer) drops it and counts it in STATS.
//
// les reads:
//   StatsD/DogStatsD  udp 127.0.0.1:8125   metrics and events; "#source:<fn>" is the source
//   logs              udp 127.0.0.1:5170   one JSON object per line; "source" is the source
//   EMF               udp 127.0.0.1:25888  one document per datagram; the FunctionName
//                                          dimension is the source
import dgram from 'node:dgram';

const HOST = process.env.LES_AGENT_HOST || '127.0.0.1';
const STATSD_PORT = Number(process.env.LES_STATSD_PORT || 8125);
const LOGS_PORT = Number(process.env.LES_LOGS_PORT || 5170);

// AWS_EMF_AGENT_ENDPOINT is what the aws-embedded-metrics libraries read,
// e.g. udp://127.0.0.1:25888. This example speaks UDP only.
function emfAddr() {
  const ep = process.env.AWS_EMF_AGENT_ENDPOINT || `udp://${HOST}:25888`;
  const m = /^udp:\/\/(.+):(\d+)$/.exec(ep);
  if (!m) throw new Error(`AWS_EMF_AGENT_ENDPOINT: this example sends UDP only: ${ep}`);
  return { host: m[1], port: Number(m[2]) };
}
const EMF = emfAddr();

// Loopback has a 64 KiB MTU; 8 KiB is what les and the Datadog agent read
// per StatsD line / datagram by default.
const MAX_DATAGRAM = 8192;

// One socket for the life of the sandbox (module scope runs once per cold
// start). unref: it never keeps the process alive; the error handler keeps
// a send error from throwing.
const sock = dgram.createSocket('udp4');
sock.unref();
sock.on('error', () => {});

export const STATS = { sent: 0, dropped: 0, datagrams: {} };

// send resolves when the datagram is handed to the kernel (or dropped):
// the handler awaits its sends so nothing is left queued in Node when the
// sandbox is frozen after the response.
function send(payload, port, host = HOST) {
  return new Promise((resolve) => {
    sock.send(payload, port, host, (err) => {
      if (err) {
        STATS.dropped++;
      } else {
        STATS.sent++;
        STATS.datagrams[port] = (STATS.datagrams[port] || 0) + 1;
      }
      resolve();
    });
  });
}

// Bytes that would break a StatsD line: ':' ends a name or a tag key, '|'
// a section, ',' a tag, a newline the line. Tag values may keep ':'.
const cleanName = (s) => String(s).replace(/[:|,\n\r\t]/g, '_');
const cleanValue = (s) => String(s).replace(/[|,\n\r\t]/g, '_');
const encodeTags = (tags) =>
  Object.entries(tags)
    .filter(([k]) => k !== '')
    .map(([k, v]) => cleanName(k) + (v === '' ? '' : ':' + cleanValue(v)))
    .join(',');

// A number as StatsD text: finite, never with a leading '+'.
const num = (v) => {
  if (!Number.isFinite(v)) throw new Error(`not a finite number: ${v}`);
  return String(v);
};

export class StatsD {
  constructor(tags) {
    this.tags = { ...tags };
    this.lines = [];
  }

  metric(name, value, type, tags = {}) {
    const t = encodeTags({ ...this.tags, ...tags });
    this.lines.push(Buffer.from(`${cleanName(name)}:${value}|${type}${t ? '|#' + t : ''}`));
  }

  count(name, value = 1, tags) { this.metric(name, num(Math.trunc(value)), 'c', tags); }

  // StatsD reads "-5|g" as a decrement and DogStatsD as -5: sending 0 first
  // makes both arrive at -5.
  gauge(name, value, tags) {
    if (value < 0) this.metric(name, '0', 'g', tags);
    this.metric(name, num(value), 'g', tags);
  }

  distribution(name, value, tags) { this.metric(name, num(value), 'd', tags); }

  timingMs(name, ms, tags) { this.metric(name, num(ms), 'ms', tags); }

  set(name, member, tags) { this.metric(name, cleanName(member), 's', tags); }

  // DogStatsD escapes newlines in title and text as "\n"; the lengths in
  // the header are in bytes.
  event(title, text, alertType = 'info', tags = {}) {
    const ti = Buffer.from(title.replaceAll('\n', '\\n'));
    const tx = Buffer.from(text.replaceAll('\n', '\\n'));
    const t = encodeTags({ ...this.tags, ...tags });
    this.lines.push(Buffer.concat([
      Buffer.from(`_e{${ti.length},${tx.length}}:`), ti, Buffer.from('|'), tx,
      Buffer.from(`|t:${cleanValue(alertType)}${t ? '|#' + t : ''}`),
    ]));
  }

  // Packs the lines into as few datagrams as fit and sends them.
  async flush() {
    const sends = [];
    let parts = [];
    let size = 0;
    for (const line of this.lines) {
      if (size > 0 && size + 1 + line.length > MAX_DATAGRAM) {
        sends.push(send(Buffer.concat(parts), STATSD_PORT));
        parts = [];
        size = 0;
      }
      if (size > 0) { parts.push(Buffer.from('\n')); size++; }
      parts.push(line);
      size += line.length;
    }
    if (size > 0) sends.push(send(Buffer.concat(parts), STATSD_PORT));
    this.lines = [];
    await Promise.all(sends);
  }
}

// One JSON log record; les takes timestamp, level, message, source and
// requestId as fields and the rest as attributes. JSON.stringify escapes
// every character that could break the line.
export function log(level, message, source, requestId, attrs = {}) {
  const rec = { timestamp: Date.now(), level, message, source, requestId, ...attrs };
  return send(Buffer.from(JSON.stringify(rec) + '\n'), LOGS_PORT);
}

// One CloudWatch Embedded Metric Format document per datagram.
export function emf(namespace, dimensions, metrics, units = {}, properties = {}) {
  const doc = {
    _aws: {
      Timestamp: Date.now(),
      CloudWatchMetrics: [{
        Namespace: namespace,
        Dimensions: [Object.keys(dimensions)],
        Metrics: Object.keys(metrics).map((k) => ({ Name: k, Unit: units[k] || 'None' })),
      }],
    },
    ...dimensions, ...metrics, ...properties,
  };
  return send(Buffer.from(JSON.stringify(doc)), EMF.port, EMF.host);
}

export const handler = async (event, context) => {
  const start = process.hrtime.bigint();
  const source = context.functionName; // les' source: per function, not per sandbox
  const stats = new StatsD({ source, stage: process.env.STAGE || 'dev' });

  const orderId = event.order_id || 'unknown';
  const items = event.items || [];
  const quantity = items.reduce((n, i) => n + (i.qty ?? 1), 0);
  const value = items.reduce((n, i) => n + (i.price ?? 0) * (i.qty ?? 1), 0);

  stats.count('orders.placed', 1, { channel: event.channel || 'web' });
  stats.distribution('orders.items', quantity);
  stats.distribution('orders.value', value);
  stats.set('orders.customers', event.customer || 'anonymous');
  stats.gauge('orders.stock_delta', event.stock_delta ?? 0);
  stats.event('order placed', `order ${orderId}\n${quantity} items`);
  stats.timingMs('orders.handler_time', Number(process.hrtime.bigint() - start) / 1e6);

  await Promise.all([
    stats.flush(),
    log('INFO', `order ${orderId} placed`, source, context.awsRequestId, { order_id: orderId, items: quantity }),
    emf('orders', { FunctionName: source }, { OrderValue: value, ItemCount: quantity },
      { ItemCount: 'Count' }, { order_id: orderId }),
  ]);
  return { statusCode: 200, body: JSON.stringify({ order_id: orderId, value }) };
};
