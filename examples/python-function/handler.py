"""An AWS Lambda handler that emits metrics, an event, a log record and an
EMF document to the les extension on loopback, with the standard library
only (socket, json). Nothing here can block or fail the function: every
send is one non-blocking UDP datagram, and an error (no agent listening, a
full socket buffer) drops the datagram and counts it in STATS.

les reads:
  StatsD/DogStatsD  udp 127.0.0.1:8125   metrics and events; "#source:<fn>" is the source
  logs              udp 127.0.0.1:5170   one JSON object per line; "source" is the source
  EMF               udp 127.0.0.1:25888  one document per datagram; the FunctionName
                                         dimension is the source
"""

import json
import os
import socket
import time

HOST = os.environ.get("LES_AGENT_HOST", "127.0.0.1")
STATSD = (HOST, int(os.environ.get("LES_STATSD_PORT", "8125")))
LOGS = (HOST, int(os.environ.get("LES_LOGS_PORT", "5170")))


def _emf_addr():
    # AWS_EMF_AGENT_ENDPOINT is what the aws-embedded-metrics libraries read,
    # e.g. udp://127.0.0.1:25888. This example speaks UDP only.
    ep = os.environ.get("AWS_EMF_AGENT_ENDPOINT", "udp://%s:25888" % HOST)
    if not ep.startswith("udp://"):
        raise ValueError("AWS_EMF_AGENT_ENDPOINT: this example sends UDP only: %r" % ep)
    host, _, port = ep[len("udp://"):].rpartition(":")
    return (host, int(port))


EMF = _emf_addr()

# Lines are packed into datagrams of at most this many bytes: loopback has
# a 64 KiB MTU, and 8 KiB is what les and the Datadog agent read per
# StatsD line / datagram by default.
MAX_DATAGRAM = 8192

# One socket for the life of the sandbox (module scope runs once per cold
# start), non-blocking so a full buffer never waits.
_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_sock.setblocking(False)

STATS = {"sent": 0, "dropped": 0, "datagrams": {}}


def _send(payload, addr):
    try:
        _sock.sendto(payload, addr)
        STATS["sent"] += 1
        STATS["datagrams"][addr[1]] = STATS["datagrams"].get(addr[1], 0) + 1
    except OSError:
        STATS["dropped"] += 1


# Bytes that would break a StatsD line: ':' ends a name or a tag key, '|'
# a section, ',' a tag, a newline the line. Tag values may keep ':'.
_NAME = str.maketrans({c: "_" for c in ":|,\n\r\t"})
_VALUE = str.maketrans({c: "_" for c in "|,\n\r\t"})


def _tags(tags):
    return ",".join(
        k.translate(_NAME) + (":" + str(v).translate(_VALUE) if v != "" else "")
        for k, v in tags.items()
        if k
    )


class StatsD:
    """Collects DogStatsD lines during an invocation and sends them packed
    into as few datagrams as fit, on flush()."""

    def __init__(self, tags):
        self.tags = dict(tags)
        self.lines = []

    def _metric(self, name, value, typ, tags):
        t = dict(self.tags)
        t.update(tags)
        line = "%s:%s|%s" % (name.translate(_NAME), value, typ)
        if t:
            line += "|#" + _tags(t)
        self.lines.append(line.encode("utf-8", "replace"))

    def count(self, name, value=1, **tags):
        self._metric(name, int(value), "c", tags)

    def gauge(self, name, value, **tags):
        # StatsD reads "-5|g" as a decrement and DogStatsD as -5: sending 0
        # first makes both arrive at -5.
        if value < 0:
            self._metric(name, 0, "g", tags)
        self._metric(name, repr(float(value)), "g", tags)

    def distribution(self, name, value, **tags):
        self._metric(name, repr(float(value)), "d", tags)

    def timing_ms(self, name, ms, **tags):
        self._metric(name, repr(float(ms)), "ms", tags)

    def set(self, name, member, **tags):
        self._metric(name, str(member).translate(_NAME), "s", tags)

    def event(self, title, text, alert_type="info", **tags):
        # DogStatsD escapes newlines in title and text as "\n"; the lengths
        # in the header are in bytes.
        ti = title.replace("\n", "\\n").encode("utf-8", "replace")
        tx = text.replace("\n", "\\n").encode("utf-8", "replace")
        t = dict(self.tags)
        t.update(tags)
        head = b"_e{%d,%d}:" % (len(ti), len(tx))
        line = head + ti + b"|" + tx + b"|t:" + alert_type.translate(_VALUE).encode()
        if t:
            line += b"|#" + _tags(t).encode("utf-8", "replace")
        self.lines.append(line)

    def flush(self):
        buf = b""
        for line in self.lines:
            if buf and len(buf) + 1 + len(line) > MAX_DATAGRAM:
                _send(buf, STATSD)
                buf = b""
            buf = buf + b"\n" + line if buf else line
        if buf:
            _send(buf, STATSD)
        self.lines = []


def log(level, message, source, request_id, **attrs):
    """One JSON log record; les takes timestamp, level, message, source and
    requestId as fields and the rest as attributes. json.dumps escapes
    every byte that could break the line."""
    rec = {"timestamp": time.time_ns(), "level": level, "message": message,
           "source": source, "requestId": request_id}
    rec.update(attrs)
    _send(json.dumps(rec, separators=(",", ":")).encode() + b"\n", LOGS)


def emf(namespace, dimensions, metrics, units, **properties):
    """One CloudWatch Embedded Metric Format document per datagram."""
    doc = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
        "Namespace": namespace,
        "Dimensions": [list(dimensions)],
        "Metrics": [{"Name": k, "Unit": units.get(k, "None")} for k in metrics],
    }]}}
    doc.update(dimensions)
    doc.update(metrics)
    doc.update(properties)
    _send(json.dumps(doc, separators=(",", ":")).encode(), EMF)


def handler(event, context):
    start = time.perf_counter()
    source = context.function_name  # les' source: per function, not per sandbox
    stats = StatsD({"source": source, "stage": os.environ.get("STAGE", "dev")})

    order_id = event.get("order_id", "unknown")
    items = event.get("items", [])
    quantity = sum(int(i.get("qty", 1)) for i in items)
    value = sum(float(i.get("price", 0)) * int(i.get("qty", 1)) for i in items)

    stats.count("orders.placed", 1, channel=event.get("channel", "web"))
    stats.distribution("orders.items", quantity)
    stats.distribution("orders.value", value)
    stats.set("orders.customers", event.get("customer", "anonymous"))
    stats.gauge("orders.stock_delta", event.get("stock_delta", 0))
    stats.event("order placed", "order %s\n%d items" % (order_id, quantity))
    stats.timing_ms("orders.handler_time", (time.perf_counter() - start) * 1000)
    stats.flush()

    log("INFO", "order %s placed" % order_id, source, context.aws_request_id,
        order_id=order_id, items=quantity)
    emf("orders", {"FunctionName": source}, {"OrderValue": value, "ItemCount": quantity},
        {"ItemCount": "Count"}, order_id=order_id)

    return {"statusCode": 200, "body": json.dumps({"order_id": order_id, "value": value})}
