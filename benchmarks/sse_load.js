// SSE load client for benchmarks/fanout.py (Node.js, no dependencies).
//
//   node sse_load.js <config JSON file>
//   config: {port, paths: [...], events, mode: "broadcast"|"targeted", deadline_ms}
//
// Opens one connection per path, parses the event streams and measures, for
// each event carrying "seq" and "sent" (epoch seconds), the delay between
// "sent" and its arrival. Prints "connected <n> <refused>" once every stream
// has answered or 60 s passed, then, when stdin says "stop" (or every
// expected delivery arrived, or the deadline passed), one line of JSON.
"use strict";
const net = require("net");
const { performance } = require("perf_hooks");

const config = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const streams = config.paths.length;
const events = config.events;
const seen = config.events ? config.paths.map(() => new Uint8Array(events)) : [];
const latencies = [];
let connected = 0, refused = 0, answered = 0, received = 0, duplicates = 0, closedEarly = 0;
const expected = config.mode === "targeted" ? events : events * streams;
const EVENT_RX = /"seq": ?(\d+), ?"sent": ?([0-9.]+)|"sent": ?([0-9.]+), ?"seq": ?(\d+)/g;
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sockets = [];
let finished = false;

function openStream(index) {
  const socket = net.connect(config.port, "127.0.0.1");
  let head = true, buffer = "";
  socket.setEncoding("latin1");
  socket.on("connect", () => {
    socket.write(`GET ${config.paths[index]} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
  });
  socket.on("data", (chunk) => {
    const t = now();
    buffer += chunk;
    if (head) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      head = false;
      answered += 1;
      if (buffer.slice(9, 12) === "200") connected += 1; else refused += 1;
      buffer = buffer.slice(end + 4);
    }
    const cut = buffer.lastIndexOf("\n\n");
    if (cut < 0) return;
    const part = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    const mine = seen[index];
    EVENT_RX.lastIndex = 0;
    let m;
    while ((m = EVENT_RX.exec(part)) !== null) {
      const seq = m[1] !== undefined ? +m[1] : +m[4];
      const sent = m[1] !== undefined ? +m[2] : +m[3];
      latencies.push(t - sent);
      if (mine && seq < mine.length) {
        if (mine[seq]) duplicates += 1; else { mine[seq] = 1; received += 1; }
      }
    }
    if (received >= expected && expected > 0) finish();
  });
  socket.on("error", () => {});
  socket.on("close", () => { closedEarly += 1; });
  sockets.push(socket);
}

function finish() {
  if (finished) return;
  finished = true;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p / 100))] : null;
  process.stdout.write(JSON.stringify({
    connected, refused, received, duplicates, expected, closed_early: closedEarly,
    p50: pct(50), p99: pct(99), max: latencies.length ? latencies[latencies.length - 1] : null,
  }) + "\n");
  for (const s of sockets) s.destroy();
  setTimeout(() => process.exit(0), 100);
}

(async () => {
  for (let i = 0; i < streams; i += 250) {
    for (let j = i; j < Math.min(i + 250, streams); j++) openStream(j);
    await new Promise((r) => setTimeout(r, 50));
  }
  const start = Date.now();
  while (answered < streams && Date.now() - start < 60000 && !config.no_head) {
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stdout.write(`connected ${connected} ${refused}\n`);
  setTimeout(finish, config.deadline_ms);
  process.stdin.on("data", (d) => { if (d.toString().includes("stop")) finish(); });
})();
