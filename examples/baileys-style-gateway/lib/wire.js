'use strict';
// A Baileys-like socket over the WhatsApp stand-in's wire protocol (chaos/CONTRACT.md):
// WebSocket to {WHATSAPP_URL}/ws/<session id>, a `hello`, `open` back or a close whose code
// is 4000 + the WhatsApp code; JSON `ping`/`pong` keepalives. Like `makeWASocket`, it reports
// through `sock.ev.on('connection.update', ...)` and is ended with `sock.end()`. As in Baileys,
// a lost link (keepalive silence, connect timeout) is reported as close 408; the socket object
// is the caller's to end — a caller that never ends it leaves the old WebSocket open.
const { EventEmitter } = require('node:events');
const WebSocket = require('ws');

const CODE_OFFSET = 4000;
const CONNECTION_LOST = 408;
const CLOSE_WAIT_MS = 1000;

function fromWsCloseCode(wsCode) {
  return wsCode >= CODE_OFFSET + 100 && wsCode <= CODE_OFFSET + 999 ? wsCode - CODE_OFFSET : undefined;
}

function makeSocket(sessionId, { whatsappUrl, policy, timeScale }) {
  const ev = new EventEmitter();
  const ws = new WebSocket(`${whatsappUrl}/ws/${encodeURIComponent(sessionId)}`, { perMessageDeflate: false });
  const intervalMs = policy.keepalive_interval_s * timeScale * 1000;
  let reported = false;
  let keepalive = null;
  let lastPongAt = 0;
  let seq = 0;
  const closed = new Promise((resolve) => ws.once('close', resolve));

  const report = (update) => {
    if (update.connection === 'close') {
      if (reported) return;
      reported = true;
      clearTimeout(connectTimer);
      clearInterval(keepalive);
    }
    setImmediate(() => ev.emit('connection.update', update));
  };
  const lost = (why) => report({ connection: 'close', lastDisconnect: { error: { message: why, output: { statusCode: CONNECTION_LOST } } } });
  const connectTimer = setTimeout(() => lost('connect timeout'), policy.connect_timeout_s * timeScale * 1000);

  ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', session_id: sessionId, credentials: '' })));
  ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return; // a malformed frame is dropped, never fatal
    }
    if (frame === null || typeof frame !== 'object') return;
    if (frame.type === 'open' && !reported) {
      clearTimeout(connectTimer);
      lastPongAt = Date.now();
      keepalive = setInterval(() => {
        if (Date.now() - lastPongAt > intervalMs * policy.keepalive_misses) return lost('keepalive silence');
        seq += 1;
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'ping', seq }));
      }, intervalMs);
      report({ connection: 'open' });
    } else if (frame.type === 'pong') {
      lastPongAt = Date.now();
    }
  });
  ws.on('error', () => {}); // always followed by 'close'
  ws.on('close', (code) => report({ connection: 'close', lastDisconnect: { error: { message: 'closed', output: { statusCode: fromWsCloseCode(code) } } } }));
  report({ connection: 'connecting' });

  async function end() {
    clearTimeout(connectTimer);
    clearInterval(keepalive);
    reported = true;
    if (ws.readyState === WebSocket.CLOSED) return;
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(1000);
    const timer = setTimeout(() => ws.terminate(), CLOSE_WAIT_MS);
    await closed; // the stand-in counts it out before its close reply: one live socket at a time (R7)
    clearTimeout(timer);
  }

  return { ev, end, ws };
}

module.exports = { CODE_OFFSET, makeSocket, fromWsCloseCode };
