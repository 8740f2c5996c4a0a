// SSE load client for benchmarks/fanout.py (Node.js, no dependencies).
//
//   node sse_load.js <config JSON file>
//   config: {port, paths: [...], events, mode: "broadcast"|"targeted", deadline_ms,
//            expected, heartbeats}
//
// Opens one connection per path, parses the event streams and measures, for
// each event carrying "seq" and "sent" (epoch seconds), the delay between
// "sent" and its arrival. Prints "connected <n> <refused>" once every stream
// has answered or 60 s passed, then, when stdin says "stop" (or every
// expected delivery arrived, or the deadline passed), one line of JSON: the
// counts, and the delays as a histogram of 0.1 ms buckets ([bucket, count]
// pairs), so that several clients' figures can be merged. With "heartbeats",
// it also records when each stream's heartbeat comments (":" blocks) arrive
// and reports the largest gap between two of them on one stream (counted
// from the last "mark" on stdin: the streams are all open by then).
"use strict";
const net = require("net");
const { performance } = require("perf_hooks");

const config = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const streams = config.paths.length;
const events = config.events;
const seen = config.events ? config.paths.map(() => new Uint8Array(events)) : [];
const BUCKETS = 600001; // 0.1 ms each, up to 60 s
const histogram = new Uint32Array(BUCKETS);
let maxDelay = null;
let connected = 0, refused = 0, answered = 0, received = 0, duplicates = 0, closedEarly = 0;
const expected = config.expected !== undefined ? config.expected
  : (config.mode === "targeted" ? events : events * streams);
const EVENT_RX = /"seq": ?(\d+), ?"sent": ?([0-9.]+)|"sent": ?([0-9.]+), ?"seq": ?(\d+)/g;
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sockets = [];
// Heartbeats: per stream, the time of the last one, the count and the largest gap.
const lastBeat = new Float64Array(streams);
const beats = new Uint32Array(streams);
const beatGap = new Float64Array(streams);
let finished = false;

function record(delay) {
  const bucket = Math.min(BUCKETS - 1, Math.max(0, Math.round(delay * 10000)));
  histogram[bucket] += 1;
  if (maxDelay === null || delay > maxDelay) maxDelay = delay;
}

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
    if (config.heartbeats) {
      // A heartbeat is a block holding only ":" (after a chunk-size line when chunked).
      for (const block of part.split("\n\n")) {
        if (block !== ":" && !block.endsWith("\n:")) continue;
        if (beats[index] > 0) beatGap[index] = Math.max(beatGap[index], t - lastBeat[index]);
        lastBeat[index] = t;
        beats[index] += 1;
      }
    }
    const mine = seen[index];
    EVENT_RX.lastIndex = 0;
    let m;
    while ((m = EVENT_RX.exec(part)) !== null) {
      const seq = m[1] !== undefined ? +m[1] : +m[4];
      const sent = m[1] !== undefined ? +m[2] : +m[3];
      record(t - sent);
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
  const hist = [];
  for (let i = 0; i < BUCKETS; i++) if (histogram[i]) hist.push([i, histogram[i]]);
  let beating = 0, gapMax = 0;
  const gaps = [];
  for (let i = 0; i < streams; i++) {
    if (beats[i] >= 2) { beating += 1; gaps.push(beatGap[i]); gapMax = Math.max(gapMax, beatGap[i]); }
  }
  gaps.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({
    connected, refused, received, duplicates, expected, closed_early: closedEarly,
    hist, max: maxDelay,
    heartbeats: config.heartbeats ? {
      streams_with_two: beating, gap_max: gapMax,
      gap_p99: gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * 0.99))] : null,
      fewest: streams ? Math.min(...beats) : 0,
    } : null,
  }) + "\n");
  for (const s of sockets) s.destroy();
  setTimeout(() => process.exit(0), 100);
}

(async () => {
  for (let i = 0; i < streams; i += 250) {
    for (let j = i; j < Math.min(i + 250, streams); j++) openStream(j);
    await new Promise((r) => setTimeout(r, 50));
    // No more than 1,000 connections waiting for their answer: a storm of
    // connections overflows the server's accept backlog, and dropped SYNs
    // are retried only after seconds.
    const waitUntil = Date.now() + 10000;
    while (!config.no_head && i + 250 - answered > 1000 && Date.now() < waitUntil) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  const start = Date.now();
  while (answered < streams && Date.now() - start < 60000 && !config.no_head) {
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stdout.write(`connected ${connected} ${refused}\n`);
  setTimeout(finish, config.deadline_ms);
  process.stdin.on("data", (d) => {
    const text = d.toString();
    if (text.includes("mark")) { beats.fill(0); beatGap.fill(0); } // heartbeats count from now
    if (text.includes("stop")) finish();
  });
})();
